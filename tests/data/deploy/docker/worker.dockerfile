ARG BASE=localhost:5000/library/python:3.12-slim

FROM ${BASE} AS deps
COPY requirements.txt /tmp/
RUN pip install --no-cache-dir -r /tmp/requirements.txt

FROM deps
RUN <<EOT
set -eu
# FROM lines inside a heredoc are shell text, not stages
echo "FROM nothing" > /etc/motd
EOT
COPY --from=deps /usr/local/lib/python3.12 /usr/local/lib/python3.12
CMD ["python", "-m", "shop.worker"]
