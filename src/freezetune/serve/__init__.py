"""The HTTP server: many compact checkpoints on one base, the shared frozen trunk run once per batch.

``load_bases`` (loading.py) puts every checkpoint onto its base; ``trunk.classify`` runs a batch
through the shared trunk; ``Worker`` (batcher.py) batches a base's requests; ``create_app``
(app.py) is the FastAPI app; ``serve`` (server.py) is ``freezetune serve``. docs/serving.md.
"""

from freezetune.serve.app import Server, create_app
from freezetune.serve.inputs import Limits
from freezetune.serve.loading import Base, ServedTask, load_bases
from freezetune.serve.server import ServeOptions, build_server, serve
from freezetune.serve.trunk import Batch, classify

__all__ = ["Base", "Batch", "Limits", "ServeOptions", "ServedTask", "Server", "build_server", "classify",
           "create_app", "load_bases", "serve"]
