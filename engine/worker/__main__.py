"""`python -m engine.worker`: the worker process of the Procfile."""

from engine.worker import process

process.main()
