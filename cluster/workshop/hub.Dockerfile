# The workshop's hub: JupyterHub, KubeSpawner, the idle culler, configurable-http-proxy, the
# progress board and the kubelet-metrics service, in one image. python -m msalab workshop up
# builds it (msalab.workshop.images) from a context of: this Dockerfile, requirements.txt,
# wheels/ (pip download), chp/ (npm install of configurable-http-proxy), services/ (the board
# and kubelet-metrics).
# BASE_IMAGE: a Debian bookworm with python3 and nodejs, built from Debian packages.
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS deps
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
COPY wheels/ /wheels/
# --no-index: a build may not reach PyPI; everything comes from the wheelhouse.
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels -r /tmp/requirements.txt

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:/opt/chp/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/opt/services
# A numeric non-root user; /srv/jupyterhub is the hub's volume (its database, the board's, the cookie secret).
RUN echo "hub:x:10001:10001:hub:/srv/jupyterhub:/usr/sbin/nologin" >> /etc/passwd \
 && echo "hub:x:10001:" >> /etc/group \
 && mkdir -p /srv/jupyterhub && chown 10001:10001 /srv/jupyterhub
COPY --from=deps /opt/venv /opt/venv
COPY chp/ /opt/chp/
COPY services/ /opt/services/
RUN python3 -m compileall -q /opt/services
WORKDIR /srv/jupyterhub
USER 10001:10001
EXPOSE 8000 8081
CMD ["jupyterhub", "--config", "/etc/jupyterhub/jupyterhub_config.py"]
