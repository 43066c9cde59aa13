"""``watcherd check-config``: the checks ``run`` makes at start, and a summary of the config."""

from __future__ import annotations

import argparse
import sys

from watcherd.config import load_config
from watcherd.errors import ConfigError
from watcherd.exitcodes import EXIT_FAIL, EXIT_OK
from watcherd.service.startcheck import check_at_start, check_online


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    key = check_at_start(config)
    online = check_online(config, key) if args.online else None
    if online is not None and online.problems:
        raise ConfigError(online.problems, str(config.source) if config.source else None)
    for warning in config.warnings:
        print(f"watcherd: warning: {warning}", file=sys.stderr)
    print(f"config {config.source}: OK")
    print(f"  api: {config.api.base_url}; key: found ({key.source})")
    print(f"  state_db: {config.state_db}")
    print(f"  settle {config.settle_seconds:g}s, poll {config.poll_interval_seconds:g}s, "
          f"rescan {config.rescan_interval_seconds:g}s, {config.upload_workers} upload worker(s)")
    print(f"  metrics: {config.metrics.url}/metrics and /healthz" if config.metrics.listen
          else "  metrics: off")
    for i, f in enumerate(config.folders):
        traits = [f"model {f.model}", "polling" if f.polling else "inotify"]
        traits += ["recursive"] * f.recursive + ["audio required"] * f.require_audio
        print(f"  folders[{i}]: {f.path} -> index {f.index_id} ({', '.join(traits)})")
        print(f"    done: {f.done_dir}  failed: {f.failed_dir}")
    for i, hook in enumerate(config.webhooks.receivers):
        print(f"  webhooks[{i}]: {hook.url} ({', '.join(hook.events)}); secret: found; "
              f"retried for {config.webhooks.retry_hours:g} h")
    if online is None:
        return EXIT_OK
    for index_id, name in online.reachable.items():
        print(f"  online: index {index_id} ({name}) answers to the key from {key.source}")
    for i, f in enumerate(online.config.folders if online.config else ()):
        print(f"  online: folders[{i}] validates with {f.profile.describe()}")
    for index_id, why in online.unchecked.items():
        print(f"watcherd: index {index_id} could not be checked: {why}", file=sys.stderr)
    return EXIT_FAIL if online.unchecked else EXIT_OK
