"""gunicorn settings for the web process (the Procfile's ``web``).

gthread workers: each thread holds one request, so long-lived server-sent-event
streams occupy a thread, not a whole process, while webhook requests stay short.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", str((os.cpu_count() or 1) * 2)))
threads = int(os.environ.get("WEB_THREADS", "16"))
# GitHub gives a delivery 10 seconds; nothing in a request should come near that,
# but an SSE stream is long by design and keeps itself alive with heartbeats.
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = "-" if os.environ.get("WEB_ACCESS_LOG") else None
