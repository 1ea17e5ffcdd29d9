"""`python -m provisioning ...` = `kiosk provision ...` (install.sh uses it before the venv has
the `kiosk` command, and in scratch-root installs)."""

from provisioning.cli import provision

provision(prog_name="kiosk provision")
