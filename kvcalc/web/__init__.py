"""kvcalc web: a local web app over the same library calls as the CLI (optional extra: pip install 'kvcalc[web]').

app.py holds the routes (FastAPI); views.py runs one library call per page and gives back what the CLI prints as
JSON or CSV; params.py reads a query string with the CLI's own option definitions; pages.py renders HTML.
"""
