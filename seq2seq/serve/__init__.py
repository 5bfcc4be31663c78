"""`seq2seq serve`: a translation API that batches concurrent requests, and a web page.

Needs the `serve` extra (`pip install 'seq2seq[serve]'`: FastAPI and uvicorn). batcher.py groups
requests into batches, schemas.py is the JSON, app.py the routes, server.py runs it all.
"""
