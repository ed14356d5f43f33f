"""Omnibus: one broker that speaks Kafka, AMQP 0-9-1 and NATS on one durable storage engine.

The embedded API lives here: ``from omnibus import Broker``. It is imported lazily so that
``import omnibus.storage`` (or the CLI's ``--version``) does not pull in the server runtime.
"""

__version__ = "0.1.0"

__all__ = ["Broker", "SyncBroker", "__version__"]


def __getattr__(name: str):
    if name in ("Broker", "SyncBroker"):
        from omnibus import embedded

        return getattr(embedded, name)
    raise AttributeError(f"module 'omnibus' has no attribute {name!r}")
