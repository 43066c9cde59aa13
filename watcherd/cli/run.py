"""``watcherd run``: the daemon in the foreground, after the checks ``check-config`` makes."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sqlite3

from watcherd import __version__
from watcherd.cli.render import terminal_console
from watcherd.config import Config, load_config
from watcherd.exitcodes import EXIT_FAIL
from watcherd.service.logs import setup_logging
from watcherd.service.startcheck import check_at_start
from watcherd.state.instance import AlreadyRunning


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    key = check_at_start(config)  # what check-config refuses too, before any thread starts
    console = terminal_console()
    setup_logging(config.log_level, console=console)
    # A hang is diagnosable: SIGUSR1 (or systemd's watchdog SIGABRT) dumps every
    # thread's stack to stderr, i.e. the journal.
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from watcherd.ingest.progress import TerminalProgress
    from watcherd.service.daemon import Daemon  # PyAV and watchdog: only for a valid config
    from watcherd.service.metricsserver import ListenError

    logger = logging.getLogger(__name__)
    logger.info("watcherd %s: config %s, API %s, key from %s", __version__, config.source,
                config.api.base_url, key.source)
    _warn_outside_state_directory(config, logger)
    for warning in config.warnings:
        logger.warning("%s: %s", config.source, warning)
    try:
        display = TerminalProgress(console) if console else None
        return Daemon(config, display=display).run()
    except (AlreadyRunning, ListenError) as exc:
        logger.critical("cannot run: %s", exc)
        return EXIT_FAIL
    except (OSError, sqlite3.Error) as exc:
        logger.critical("cannot run: %s (state_db %s)", exc, config.state_db)
        return EXIT_FAIL


def _warn_outside_state_directory(config: Config, logger: logging.Logger) -> None:
    # The default state_db no longer follows $STATE_DIRECTORY (only the service
    # sees it); a unit with a config elsewhere must name its state_db.
    state_directory = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state_directory and not config.state_db.is_relative_to(state_directory):
        logger.warning("state_db %s is outside the unit's StateDirectory %s; if watcherd "
                       "cannot write there, set state_db in %s", config.state_db,
                       state_directory, config.source)
