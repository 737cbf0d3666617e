# pbx-agent: the daemon's image. Build: docker build -t pbx-agent .
# Runs `pbx-agent run` with the configuration at $PBX_AGENT_CONFIG; secrets come from the
# environment (PBX_AGENT_ASTERISK__SECRET, PBX_AGENT_STORE__URL, ...). espeak-ng and SoX are
# in the image for `pbx-agent prompts render`.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng sox \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/pbx-agent --shell /usr/sbin/nologin pbx-agent

WORKDIR /opt/pbx-agent
COPY pyproject.toml README.md ./
COPY pbx_agent ./pbx_agent
RUN pip install --no-cache-dir . \
    && mkdir -p /etc/pbx-agent /var/lib/pbx-agent/sounds /var/lib/pbx-agent/data \
    && chown -R pbx-agent /var/lib/pbx-agent
COPY config/pbx-agent.toml /etc/pbx-agent/pbx-agent.toml

USER pbx-agent
WORKDIR /var/lib/pbx-agent
ENV PBX_AGENT_CONFIG=/etc/pbx-agent/pbx-agent.toml \
    PYTHONUNBUFFERED=1
# 9464: /metrics and /healthz; 4573: FastAGI; 9092: AudioSocket (callbacks' machine detection).
EXPOSE 9464 4573 9092
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=3).status == 200 else 1)"]
ENTRYPOINT ["pbx-agent"]
CMD ["run"]
