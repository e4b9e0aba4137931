"""gunicorn settings for the web process (the Procfile's ``web``).

gthread workers: each thread holds one request, so long-lived server-sent-event
streams occupy a thread, not a whole process, while webhook requests stay short.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
worker_class = "gthread"
# One process per core with four threads each measured best for webhook throughput
# on two cores (bench/webhooks.py: 2x4 beat 2x8, 4x4, 2x2 and 3 or 4 sync
# workers, with new connections per delivery as GitHub sends them and with
# keep-alive; bench/README.md). Hosts with long-lived streams raise WEB_THREADS.
workers = int(os.environ.get("WEB_CONCURRENCY", str(os.cpu_count() or 1)))
threads = int(os.environ.get("WEB_THREADS", "4"))
# GitHub gives a delivery 10 seconds; nothing in a request should come near that,
# but an SSE stream is long by design and keeps itself alive with heartbeats.
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = "-" if os.environ.get("WEB_ACCESS_LOG") else None
