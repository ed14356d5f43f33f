"""The ``omnibus`` command: ``serve`` (the broker), ``check-data`` (verify or repair a data dir), ``--version``.

Rules: a bad setting, a busy port or an unusable data dir ends with one line on stderr and a non-zero exit
(2 for bad settings, as click does for bad flags; 1 for failures at start), never a traceback. ``serve``
prints one line per listener and one ``ready`` line, flushed, so scripts can wait for it.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import click

from omnibus import __version__
from omnibus.config import ConfigError, load_settings

EXIT_BAD_CONFIG = 2
EXIT_START_FAILED = 1


def _fail(message: str, code: int) -> None:
    click.echo(f"omnibus: error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="omnibus", message="%(prog)s %(version)s")
def main() -> None:
    """Omnibus: one broker for Kafka, AMQP 0-9-1 and NATS clients, on one durable log."""


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML settings file (also $OMNIBUS_CONFIG).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where logs and metadata live.")
@click.option("--host", default=None, help="Address every listener binds to (default 127.0.0.1).")
@click.option("--kafka-port", type=int, default=None, help="Kafka listener port (default 9092; 0 = any free).")
@click.option("--amqp-port", type=int, default=None, help="AMQP 0-9-1 listener port (default 5672).")
@click.option("--nats-port", type=int, default=None, help="NATS listener port (default 4222).")
@click.option("--http-port", type=int, default=None, help="HTTP admin/metrics port (default 8222).")
@click.option("--fsync", type=click.Choice(["always", "interval", "never"]), default=None,
              help="When data counts as durable (default interval).")
def serve(config_file, data_dir, host, kafka_port, amqp_port, nats_port, http_port, fsync) -> None:
    """Run the broker until SIGTERM or SIGINT."""
    t0 = time.perf_counter()
    try:
        settings = load_settings(config_file, overrides={
            "data_dir": data_dir, "host": host, "kafka_port": kafka_port, "amqp_port": amqp_port,
            "nats_port": nats_port, "http_port": http_port, "storage.fsync": fsync})
    except ConfigError as e:
        _fail(str(e), EXIT_BAD_CONFIG)
    from omnibus.server.loop import run

    code = run(_serve(settings, t0))
    sys.exit(code)


async def _serve(settings, t0: float) -> int:
    import asyncio

    from omnibus.server.app import BrokerServer, StartupError
    from omnibus.server.loop import LOOP_NAME

    server = BrokerServer(settings)
    try:
        await server.start()
    except StartupError as e:
        click.echo(f"omnibus: error: {e}", err=True)
        return EXIT_START_FAILED
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before "ready": a script may signal right after it
        loop.add_signal_handler(sig, lambda: loop.create_task(server.stop()))
    for proto, (host, port) in server.listeners.items():
        click.echo(f"omnibus: {proto} listening on {host}:{port}")
    click.echo(f"omnibus: ready in {(time.perf_counter() - t0) * 1000:.0f} ms "
               f"(data dir {settings.data_dir}, fsync={settings.storage.fsync}, {LOOP_NAME})")
    sys.stdout.flush()
    await server.wait_stopped()
    click.echo("omnibus: stopped")
    return 0


@main.command("check-data")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--repair", is_flag=True, help="Truncate torn tails and rebuild bad indexes.")
def check_data_cmd(data_dir: str, repair: bool) -> None:
    """Verify every segment's batches and indexes under DATA_DIR (the broker must be stopped)."""
    from rich.console import Console
    from rich.table import Table

    from omnibus.storage.check import check_data

    report = check_data(data_dir, repair=repair)
    console = Console(highlight=False)
    table = Table(title=f"omnibus check-data {data_dir}" + (" --repair" if repair else ""))
    for col in ("log", "segments", "batches", "records", "bytes", "offsets", "status"):
        table.add_column(col, justify="left" if col in ("log", "status", "offsets") else "right")
    for log in report.logs:
        status = "ok" if not log.problems else ("repaired" if log.ok else "PROBLEMS")
        details = [str(p) for p in log.problems] + [f"note: {n}" for n in log.notes]
        table.add_row(os.path.relpath(log.path, data_dir), str(log.segments), str(log.batches),
                      str(log.records), str(log.bytes), f"[{log.start_offset}, {log.end_offset})",
                      "\n".join([status, *details]))
    console.print(table)
    t = report.totals
    verdict = "OK" if report.ok else "PROBLEMS FOUND" + ("" if repair else " (run with --repair to fix)")
    console.print(f"{t['logs']} logs, {t['segments']} segments, {t['batches']} batches, {t['records']} records, "
                  f"{t['bytes']} bytes; {t['problems']} problems, {t['repaired']} repaired: {verdict}")
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
