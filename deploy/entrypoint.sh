#!/bin/sh
# How KIM-Admin starts in production, in the container and outside it (the
# gunicorn test in tests/test_operations.py runs this very script): bring the
# database to the migrations' head, then serve with gunicorn (gunicorn.conf.py
# reads KIM_BIND, KIM_WORKERS, KIM_THREADS, KIM_TIMEOUT). flask and gunicorn come
# from PATH (the image's Python, or the virtualenv's bin/ put first in PATH).
set -eu
cd "$(dirname "$0")/.."
export FLASK_APP=app.py
flask db upgrade
exec gunicorn --config gunicorn.conf.py
