"""``make run`` and ``make demo``: start Redis (if needed), the sandbox portal, the web process, a
worker and the sweep scheduler, then show the loop: a demo time entry over the cap is capped and the audit shows it.

``run`` keeps everything up until Ctrl-C; ``demo`` runs the loop once on free ports and exits 0 or 1.
With ``B24_WEBHOOK_URL`` set, no sandbox is started and the loop is not shown (it would edit a real
portal); the service simply runs against that portal.

``run`` writes what it generated (the sandbox's secret and tokens, the admin token, REDIS_URL) to
``var/run.env``, which every ``flask --app app ...`` command started from this directory reads, so the CLI
in a second terminal talks to the same service. Before starting anything it checks the configuration and
the ports, and says in one line what is wrong.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.control import SandboxControl  # noqa: E402
from scripts.ensure_redis import ensure_redis  # noqa: E402

BIN = Path(sys.executable).parent
RUN_ENV = ROOT / "var" / "run.env"
GENERATED = ("REDIS_URL", "SANDBOX_URL", "SANDBOX_SECRET", "SANDBOX_APPLICATION_TOKEN", "SANDBOX_HANDLER_URL",
             "TASKWARDEN_ADMIN_TOKEN", "B24_APP_CLIENT_ID", "B24_APP_CLIENT_SECRET", "B24_OAUTH_URL",
             "B24_ALLOWED_PORTALS", "TASKWARDEN_PUBLIC_URL", "TASKWARDEN_SECRET_KEY")
APP_PORTALS = ("alpha", "beta")
"""The sandbox portals that install Taskwarden in the application-mode demo (``make run APP=1``)."""
DEMO_CAP_SECONDS = 28800
LOOP_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], what: str, timeout: float) -> Any:
    """Poll ``check`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (requests.RequestException, OSError):
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class Processes:
    """The child processes we started, stopped in reverse order."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        print(f"[taskwarden] starting {name}: {' '.join(args[:4])} ...", flush=True)
        self.children.append((name, subprocess.Popen(args, cwd=ROOT, env=env)))  # noqa: S603

    def adopt(self, name: str, process: subprocess.Popen[bytes] | None) -> None:
        if process is not None:
            self.children.append((name, process))

    def check_alive(self) -> None:
        for name, process in self.children:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}")

    def stop(self) -> None:
        for _name, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _name, process in reversed(self.children):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def service_env(mode: str, app_mode: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """The environment for the children, and the facts the loop needs (ports, tokens)."""
    env = dict(os.environ)
    sandbox_mode = not env.get("B24_WEBHOOK_URL")
    web_port = free_port() if mode == "demo" else int(env.get("PORT", "8000"))
    sandbox_port = free_port() if mode == "demo" else int(env.get("SANDBOX_PORT", "8700"))
    facts = {"web": f"http://127.0.0.1:{web_port}", "sandbox": f"http://127.0.0.1:{sandbox_port}"}
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    env.setdefault("LOG_FORMAT", "console")
    env["PORT"] = str(web_port)
    if sandbox_mode:
        env.setdefault("TASKWARDEN_ADMIN_TOKEN", secrets.token_urlsafe(16))
        env.update(SANDBOX_URL=facts["sandbox"], SANDBOX_SECRET=secrets.token_hex(12),
                   SANDBOX_APPLICATION_TOKEN=secrets.token_hex(16),
                   SANDBOX_HANDLER_URL=f"{facts['web']}/bitrix24/events")
    if sandbox_mode and app_mode:  # the sandbox plays two portals and the OAuth server; we are the application
        from cryptography.fernet import Fernet

        client_id, client_secret = f"app.{secrets.token_hex(6)}", secrets.token_urlsafe(24)
        env.update(SANDBOX_PORTALS=",".join(APP_PORTALS), SANDBOX_APP_CLIENT_ID=client_id,
                   SANDBOX_APP_CLIENT_SECRET=client_secret, B24_APP_CLIENT_ID=client_id,
                   B24_APP_CLIENT_SECRET=client_secret, B24_OAUTH_URL=f"{facts['sandbox']}/oauth/token/",
                   B24_ALLOWED_PORTALS="127.0.0.1", TASKWARDEN_PUBLIC_URL=facts["web"],
                   TASKWARDEN_SECRET_KEY=Fernet.generate_key().decode())
        env.pop("SANDBOX_HANDLER_URL", None)
    facts["admin_token"] = env.get("TASKWARDEN_ADMIN_TOKEN", "")
    facts["sandbox_mode"] = "1" if sandbox_mode else ""
    facts["app_mode"] = "1" if sandbox_mode and app_mode else ""
    return env, facts


def check_ports(facts: dict[str, str]) -> None:
    """Fail at once, naming the variable, when a port we are about to listen on is taken."""
    ports = [("PORT", facts["web"])] + ([("SANDBOX_PORT", facts["sandbox"])] if facts["sandbox_mode"] else [])
    for variable, url in ports:
        port = int(url.rsplit(":", 1)[1])
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise RuntimeError(f"port {port} is busy: stop what listens there or set {variable}=<another port>") \
                    from None


def check_configuration(env: dict[str, str]) -> None:
    """The children would each stop on a bad setting or rules file; say it once, before starting any."""
    done = subprocess.run([sys.executable, "-c", "from startup import configuration_or_exit as c; c()"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "configuration error")


def write_run_env(env: dict[str, str]) -> None:
    """What this run generated, for the CLI next to it (``config.settings`` reads var/run.env)."""
    RUN_ENV.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{name}={env[name]}" for name in GENERATED if env.get(name)]
    RUN_ENV.write_text("# written by `make run`; read by flask --app app ...\n" + "\n".join(lines) + "\n")
    RUN_ENV.chmod(0o600)


def start_all(procs: Processes, env: dict[str, str], facts: dict[str, str]) -> None:
    procs.adopt("redis", ensure_redis(env["REDIS_URL"]))
    flask = [str(BIN / "flask"), "--app", "app"]
    if facts["sandbox_mode"]:
        procs.start("sandbox portal", [*flask, "sandbox", "--port", facts["sandbox"].rsplit(":", 1)[1],
                                       "--seed", "demo"], {**env, "B24_APP_CLIENT_ID": ""})
        wait_until(lambda: SandboxControl(facts["sandbox"]).config(), "the sandbox portal", 20)
    procs.start("web", [str(BIN / "gunicorn"), "-c", "config/gunicorn.py", "app:create_app()"], env)
    procs.start("worker", [*flask, "worker"], env)
    procs.start("scheduler", [*flask, "scheduler"], env)
    wait_until(lambda: requests.get(f"{facts['web']}/readyz", timeout=2).ok, "the web process", 30)


def show_loop(facts: dict[str, str], procs: Processes) -> bool:
    """Edit the demo task in the sandbox; its event reaches intake; a worker caps the long entry."""
    control = SandboxControl(facts["sandbox"])
    entry = next((e for e in control.entries() if int(e["SECONDS"]) > DEMO_CAP_SECONDS), None)
    if entry is None:
        print("[taskwarden] the demo set has no entry over the cap (already capped?)", flush=True)
        return False
    task_id, entry_id = int(entry["TASK_ID"]), int(entry["ID"])
    print(f"[taskwarden] demo: task {task_id} has a time entry of {entry['SECONDS']} s "
          f"({entry['COMMENT_TEXT']!r}); the rule caps entries at {DEMO_CAP_SECONDS} s.", flush=True)
    print(f"[taskwarden] editing task {task_id} in the sandbox; it sends ONTASKUPDATE to {facts['web']}", flush=True)
    control.update_task(task_id, TITLE=f"{control.task(task_id)['TITLE']} (edited)")

    def capped() -> dict[str, Any] | None:
        procs.check_alive()
        now = control.entry(entry_id)
        return now if now and int(now["SECONDS"]) == DEMO_CAP_SECONDS else None

    after = wait_until(capped, "the entry to be capped", LOOP_TIMEOUT_SECONDS)
    print(f"[taskwarden] entry {entry_id} is now {after['SECONDS']} s, comment {after['COMMENT_TEXT']!r}", flush=True)
    headers = {"Authorization": f"Bearer {facts['admin_token']}"}
    decisions = wait_until(lambda: requests.get(f"{facts['web']}/audit", params={"task": task_id},
                                                headers=headers, timeout=5).json()["decisions"],
                           "the audit record", 10)
    for d in decisions:
        change = f"{d['before']} -> {d['after']}" if d["outcome"] in ("changed", "would_change") else d["detail"]
        print(f"[taskwarden] audit: {d['time']} rule={d['rule']} task={d['task_id']} {d['entity']} "
              f"{change} outcome={d['outcome']} cause={d['cause']}", flush=True)
    return any(d["outcome"] == "changed" and d["entity"] == f"entry:{entry_id}" for d in decisions)


def show_app_loop(facts: dict[str, str], procs: Processes) -> bool:
    """Application mode: both sandbox portals install Taskwarden; a long entry in each is capped through that
    portal's own tokens and events."""
    control = SandboxControl(facts["sandbox"])
    entries = {}
    for name in APP_PORTALS:
        status, body = control.install(name, f"{facts['web']}/bitrix24/install")
        print(f"[taskwarden] portal {name} installed the application: HTTP {status} {body}", flush=True)
        if status != 200:
            return False
        task_id = control.add_task(portal=name, TITLE=f"Report for {name}")
        entries[name] = control.add_entry(task_id, 36000, "client call", portal=name)
        print(f"[taskwarden] {name}: task {task_id} got a 36000 s entry; its ONTASKADD goes to {facts['web']}",
              flush=True)

    def all_capped() -> bool:
        procs.check_alive()
        return all(int((control.entry(entry, portal=name) or {}).get("SECONDS", 0)) == DEMO_CAP_SECONDS
                   for name, entry in entries.items())

    wait_until(all_capped, "the entries of both portals to be capped", LOOP_TIMEOUT_SECONDS)
    for name, entry in entries.items():
        after = control.entry(entry, portal=name) or {}
        print(f"[taskwarden] {name}: entry {entry} is now {after['SECONDS']} s, comment {after['COMMENT_TEXT']!r}",
              flush=True)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("run", "demo"))
    parser.add_argument("--app", action="store_true", help="Application mode: two sandbox portals install it.")
    arguments = parser.parse_args()
    mode = arguments.mode
    env, facts = service_env(mode, app_mode=arguments.app)
    procs = Processes()
    try:
        check_ports(facts)
        check_configuration(env)
        if mode == "run":
            write_run_env(env)
        start_all(procs, env, facts)
        loop = show_app_loop if facts["app_mode"] else show_loop
        ok = loop(facts, procs) if facts["sandbox_mode"] else True
        if mode == "demo":
            print(f"[taskwarden] demo {'passed' if ok else 'FAILED'}", flush=True)
            return 0 if ok else 1
        print(f"[taskwarden] running: web {facts['web']}; the CLI reads {RUN_ENV.relative_to(ROOT)}: try "
              f"`.venv/bin/flask --app app status` or `.venv/bin/flask --app app audit` (Ctrl-C stops everything)",
              flush=True)
        while True:
            procs.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    except (TimeoutError, RuntimeError) as exc:
        print(f"[taskwarden] {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        procs.stop()


if __name__ == "__main__":
    sys.exit(main())
