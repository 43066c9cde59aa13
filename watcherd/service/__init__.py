"""The daemon as a systemd service: wiring, start-up checks, health and sd_notify,
journald logging, reload, runtime snapshot, rebuild."""
