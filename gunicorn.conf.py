"""gunicorn settings for KIM-Admin, read from the environment (``make serve``).

    KIM_BIND        address to listen on                     127.0.0.1:8000
    KIM_WORKERS     worker processes (else WEB_CONCURRENCY)  2
    KIM_THREADS     threads per worker                       4
    KIM_TIMEOUT     seconds before a silent worker is killed 60 (reports take a while)
    KIM_KEEPALIVE   seconds an idle keep-alive connection stays open  5
    KIM_ACCESS_LOG  "-" (standard output), a file, or "" for none (the app logs each
                    request itself, with its request id)      ""

Start: ``gunicorn app:app`` in the project folder (gunicorn reads this file from there).
"""

import os

bind = os.environ.get("KIM_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("KIM_WORKERS") or os.environ.get("WEB_CONCURRENCY") or 2)
threads = int(os.environ.get("KIM_THREADS", "4"))
timeout = int(os.environ.get("KIM_TIMEOUT", "60"))
graceful_timeout = 30
# Longer than a person's pause between two clicks plus a slow answer: with gunicorn's
# 2 s a connection closed at the moment the browser (or nginx) reuses it fails the
# request ("connection reset"), which the 30-user bench saw under load.
keepalive = int(os.environ.get("KIM_KEEPALIVE", "5"))
# gunicorn honours X-Forwarded-Proto only from a proxy on this host; client addresses
# and X-Request-ID are the app's concern (KIM_TRUSTED_PROXIES).
forwarded_allow_ips = "127.0.0.1"
accesslog = os.environ.get("KIM_ACCESS_LOG") or None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms id=%({x-request-id}o)s'
errorlog = "-"
loglevel = os.environ.get("KIM_GUNICORN_LOGLEVEL", "info")
# Workers restart now and then, so a slow leak cannot grow without bound.
max_requests = 2000
max_requests_jitter = 200
wsgi_app = "app:app"


def on_starting(server):
    """Tell the app how many workers share the throttle (see kim_admin.config)."""
    os.environ["KIM_WORKERS"] = str(server.cfg.workers)
