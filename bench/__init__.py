"""The benchmark: a raw aio-pika one-hop ceiling and the whole pipeline, in one run on one broker.

Run with ``.venv/bin/python -m bench``; see ``bench/__main__.py``.
"""
