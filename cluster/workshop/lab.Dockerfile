# A student's server in a workshop: JupyterLab with the course (msalab, the labs, the cluster
# manifests) and kubectl, started by KubeSpawner as jupyterhub-singleuser. Built by
# python -m msalab workshop up (msalab.workshop.images) from a context of: this Dockerfile,
# requirements.txt (the course's, less the book and test tools), wheels/, course/ (the parts of
# the repository the labs read), kubectl (the cluster's own build), istioctl, components/ (Part II's
# binaries), start-lab.
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS deps
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
COPY wheels/ /wheels/
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels -r /tmp/requirements.txt

FROM ${BASE_IMAGE}
# The course is on PYTHONPATH, not pip-installed: msalab finds the labs and manifests beside
# itself (msalab.paths.REPO = /opt/course), as in a clone.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/course:/opt/course/lab-services PYTHONUNBUFFERED=1 \
    HOME=/home/student MSALAB_NO_PROGRESS=0
# jupyter's convention is uid 1000; numeric so runAsNonRoot can verify it.
RUN echo "student:x:1000:1000:student:/home/student:/bin/bash" >> /etc/passwd \
 && echo "student:x:1000:" >> /etc/group \
 && mkdir -p /home/student && chown 1000:1000 /home/student
COPY --from=deps /opt/venv /opt/venv
COPY kubectl /usr/local/bin/kubectl
# Part IV's istioctl (msalab.cluster.mesh asks istiod as the student's mesh namespace).
COPY istioctl /usr/local/bin/istioctl
# Part II's components (etcd, Envoy, Loki, Jaeger, Prometheus, fortio), run as processes: a pod
# has no container engine (msalab.componentprocs).
COPY components/ /opt/msalab/components/
COPY start-lab /usr/local/bin/start-lab
COPY course/ /opt/course/
RUN python3 -m compileall -q /opt/course/msalab /opt/course/lab-services
WORKDIR /home/student
USER 1000:1000
EXPOSE 8888
CMD ["start-lab"]
