"""The back office in tests: a cloud (key, site key, SQLite store) with a `[console]`, the console
served by its real command (waitress) on a free loopback port in a child process (stopped by
PID), operators made through the console's own Django models, and Debian's chromium driven by
Playwright (never Playwright's own browser download)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cloud_sync import admin, ca
from cloud_sync.settings import CloudConfig, load_config
from cloud_sync.store import SqliteCloudStore
from edge.ledger import generate_key, load_private_key, save_private_key
from edge.ledger.sitekey import create_site_key, load_site_secrets
from tests.mqtt_broker import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "console"
PASSWORD = "counter-pass-1"


def write_cloud(root: Path, pki: Path | None = None, port: int = 1) -> Path:
    """A cloud config: key, site key and store under `root`; the broker (reconciler's
    certificate) when a test PKI is given."""
    root.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    save_private_key(root / "cloud.key", key)
    create_site_key(root / "site.key")
    broker = f'[reconciler.broker]\nhost = "127.0.0.1"\nport = {port}\nconnect_timeout_s = 2.0\n'
    if pki is not None:
        broker += (
            "[reconciler.broker.tls]\n"
            f'ca = "{pki / ca.CA_CERT}"\ncert = "{pki / "reconciler.crt"}"\n'
            f'key = "{pki / "reconciler.key"}"\n'
        )
    path = root / "cloud.toml"
    path.write_text(
        "[reconciler]\n"
        f'key_file = "cloud.key"\nsite_key_file = "site.key"\nstore = "sqlite:///{root}/cloud.db"\n'
        '[console]\nlockout_failures = 3\nsites = ["s1", "s2"]\n' + broker
    )
    return path


class Console:
    """`kiosk cloud console` as a child process on a free port."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.cfg: CloudConfig = load_config(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = config.parent / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from kiosk.cli import main; main()", "cloud", "console",
                 "--config", str(self.config), "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/admin/login/", timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"console exited: {self.log.read_text()[-3000:]}") from None
                time.sleep(0.1)
        raise RuntimeError("console did not answer")

    def stop(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            self.proc = None

    def django(self) -> None:
        """The console's Django models in this process (same database file)."""
        from backoffice.clilog import setup_django

        # The tests are async (Playwright, the kiosk); their few ORM calls are sequential.
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
        setup_django(self.cfg)  # once per process; later tests only point it at their file
        from django import db

        conn = db.connections["default"]
        conn.close()
        conn.settings_dict["NAME"] = self.cfg.console_database().removeprefix("sqlite:///")

    def store(self) -> SqliteCloudStore:
        """The cloud store the console serves, opened as the CLI would (close it after)."""
        s = self.cfg.reconciler
        return SqliteCloudStore(
            s.store.removeprefix("sqlite:///"), replica="cloud", key=load_private_key(s.key_file)
        )

    def operator(self, name: str, group: str, site: str = "") -> None:
        from django.contrib.auth.models import Group, User

        from backoffice.operators.models import Operator

        user = User.objects.create_user(name, password=PASSWORD, is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        Operator.objects.filter(user=user).update(site=site)

    def actions(self, **filters: Any) -> list[Any]:
        from backoffice.audit.models import Action

        return list(Action.objects.filter(**filters))

    def secrets(self) -> Any:
        assert self.cfg.reconciler.site_key_file is not None
        return load_site_secrets(self.cfg.reconciler.site_key_file)


async def browser(pw: Any) -> Any:
    return await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


async def login(page: Any, url: str, user: str, password: str = PASSWORD) -> None:
    await page.goto(url + "/admin/login/?next=/")
    await page.fill("#id_username", user)
    await page.fill("#id_password", password)
    await page.click("input[type=submit]")
    await page.wait_for_load_state()


def running_console(root: Path) -> Iterator[Console]:
    """A console on a cloud at `root` holding members m1 (Alice Wong) and m2 (Bob Li), written
    outside the console (as the CLI would) before it starts; stopped after."""
    c = Console(write_cloud(root))
    store = c.store()
    admin.register_member(store, "m1", "Alice Wong")
    admin.register_member(store, "m2", "Bob Li")
    store.close()
    c.start()
    c.django()
    try:
        yield c
    finally:
        c.stop()
