"""A live view of a sweep: optuna-dashboard (an optional extra) served on the sweep's own
study, its SQLite file or the shared database, while workers still run or after they end."""

from __future__ import annotations

import threading
from pathlib import Path
from wsgiref.simple_server import make_server

from cnnlab.errors import ConfigError
from cnnlab.run_folder.confined import FolderFile, refuse_links_within
from cnnlab.sweep.storage import database_errors, shown, with_driver


def serve_dashboard(sweep_dir: str | Path | None = None, storage: str | None = None,
                    host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard for the sweep in `sweep_dir` (its study.db), or the study
    database at `storage`, until interrupted."""
    try:
        import optuna_dashboard
    except ImportError:
        raise ConfigError("the dashboard needs optuna-dashboard: "
                          "pip install 'cnnlab[dashboard]'") from None
    url = storage or _study_file(sweep_dir)
    with database_errors(url):
        import optuna

        rdb = optuna.storages.RDBStorage(with_driver(url))
    # Served from a thread: the main thread only waits, so Ctrl-C and SIGTERM (raised there as
    # KeyboardInterrupt) always reach it; raised inside a request, wsgiref's handler would
    # answer a 500 and serve on.
    server = make_server(host, port, optuna_dashboard.wsgi(rdb))
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    print(f"optuna-dashboard on http://{host}:{server.server_port}/ for {shown(url)} "
          "(Ctrl-C stops it)", flush=True)
    try:
        while serving.is_alive():
            serving.join(0.5)
    finally:
        server.shutdown()
        server.server_close()


def _study_file(sweep_dir: str | Path | None) -> str:
    if sweep_dir is None:
        raise ConfigError("give a sweep folder (sweeps/<name>) or --storage URL")
    study = FolderFile(Path(sweep_dir), "study.db")
    if not study.exists():
        raise ConfigError(f"{sweep_dir} holds no study.db: give a sweep folder, or the "
                          "--storage URL the sweep ran on")
    refuse_links_within(Path(sweep_dir), "sweep")  # SQLite opens the file and its journals
    return f"sqlite:///{study.path.resolve()}"
