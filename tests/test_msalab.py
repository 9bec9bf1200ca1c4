"""The helper package: clear errors, doctor, and nothing left running."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from msalab import LabError, load, ports, procs, shop


def test_busy_port_gives_the_fix_command():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LabError) as err:
            shop.Monolith("busy-port", port=port).start()
    assert f"port {port} is in use" in str(err.value) and "python -m msalab shop stop" in err.value.fix


def test_doctor_reports_a_busy_lab_port_and_fails():
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", ports.GATEWAY))
        except OSError:
            pytest.fail("port 8100 is already busy on this machine: stop what uses it first")
        sock.listen()
        run = subprocess.run([sys.executable, "-m", "msalab", "doctor"], capture_output=True, text=True)
    assert run.returncode == 1
    assert "port 8100 (gateway) is in use" in run.stdout and "fix:" in run.stdout


def test_stop_all_leaves_nothing_running():
    deployment = shop.Monolith("stop-all", port=ports.free_port()).start()
    pid = deployment["monolith"].pid
    assert procs.stop_all("stop-all") == ["monolith"]
    assert not deployment["monolith"].alive()
    assert all(r["pid"] != pid for r in procs.running())
    deployment.cleanup()
    assert not deployment.data.exists()


def test_a_service_that_cannot_start_says_why(tmp_path):
    bad = procs.ServiceProcess("bad", "catalog", ports.free_port(), tmp_path, env={"SHOP_PRODUCT_COUNT": "many"},
                               deployment="bad")
    with pytest.raises(LabError, match="exited while starting"):
        bad.start().wait_ready(10)
    bad.stop()


def test_promtext_reads_and_sums_matching_samples():
    from msalab import promtext

    text = (
        "# TYPE http_requests counter\n"
        'http_requests_total{route="/a",status="200"} 3\n'
        'http_requests_total{route="/a",status="500"} 2\n'
        'http_requests_total{route="/b",status="200"} 5\n'
    )
    assert promtext.total(text, "http_requests_total", route="/a") == 5
    assert promtext.total(text, "http_requests_total", status="200") == 8
    assert promtext.total(text, "http_requests_total", route="/c") == 0


def test_promtext_total_at_gives_the_measurement_time():
    from msalab import promtext

    text = 'cpu_seconds_total{pod="a"} 3 1000\ncpu_seconds_total{pod="b"} 4 2000\n'
    assert promtext.total_at(text, "cpu_seconds_total") == (7, 2.0)
    assert promtext.total_at("cpu_seconds_total 1\n", "cpu_seconds_total") == (1, None)


def test_promtext_finds_counters_written_without_total():
    from msalab import promtext

    text = '# TYPE envoy_rate_limited counter\nenvoy_rate_limited{prefix="products"} 2\n'
    assert promtext.total(text, "envoy_rate_limited", prefix="products") == 2


def test_compare_latencies_takes_the_paths_in_turn_and_stops_on_a_failed_request():
    seen = []

    def path(name, status=200):
        def call():
            seen.append(name)
            return shop.Reply(status, ms=float(len(seen)))
        return call

    result = load.compare_latencies({"a": path("a"), "b": path("b")}, 3, warmup=1)
    assert seen == ["a", "b"] * 4  # one warm-up round, then a, b, a, b, ...
    assert result == {"a": [3.0, 5.0, 7.0], "b": [4.0, 6.0, 8.0]}
    with pytest.raises(RuntimeError, match=r"\(b\) failed"):
        load.compare_latencies({"a": path("a"), "b": path("b", status=503)}, 3, warmup=0)


def test_a_build_another_process_runs_is_waited_for_and_not_repeated(tmp_path, monkeypatch):
    """make test's background prebuild and a foreground step may want the same Go build: the
    second one waits for the first's lock, then finds it complete instead of building again."""
    import time

    from msalab.cluster import gobuild

    monkeypatch.setenv("MSALAB_CACHE", str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time\nfrom msalab.cluster import gobuild\n"
        "with gobuild.building('demo', 'v1'):\n"
        "    print('holding', flush=True)\n    time.sleep(1.5)\n"
        "    (gobuild.build_root('demo', 'v1')).mkdir(parents=True)\n"
        "    (gobuild.build_root('demo', 'v1') / 'complete').write_text('built')\n")],
        stdout=subprocess.PIPE, text=True, env={**__import__("os").environ, "MSALAB_CACHE": str(tmp_path)})
    assert holder.stdout.readline().strip() == "holding"
    started = time.monotonic()
    with gobuild.building("demo", "v1"):
        waited = time.monotonic() - started
        assert gobuild.is_built("demo", "v1"), "the lock was taken before the other build finished"
    assert holder.wait(timeout=10) == 0
    assert waited > 0.5, f"did not wait for the other process ({waited:.2f} s)"


def test_the_footprint_counts_programs_run_from_the_build_cache_not_builds_that_name_it(tmp_path_factory):
    """make test compares the footprint before cluster up and after cluster down while its
    background build may be compiling into ~/.cache/msalab/cache/go: that go command is no
    cluster component, a program run from there is."""
    import shutil

    from msalab.cluster import manage

    # (not tmp_path: its name holds the test's, and footprint() leaves out its own command line)
    component = tmp_path_factory.mktemp("builds") / "cache" / "go" / "demo-v1" / "bin" / "sleep"
    component.parent.mkdir(parents=True)
    shutil.copy("/bin/sleep", component)
    running = [subprocess.Popen([str(component), "30"]),
               subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-o", str(component.parent)])]
    try:
        processes = [line for line in manage.footprint() if line.startswith("process ")]
        assert f"process {component}" in processes
        assert f"process {sys.executable}" not in processes, processes
    finally:
        for proc in running:
            proc.kill()
            proc.wait()


def test_envoy_stats_text_gives_its_numbers():
    from msalab.mesh import _stat_values

    text = ("listener_manager.total_filter_chains_draining: 7\nserver.state: 0\n"
            "cluster.inbound|8080||.upstream_rq_time: P0(nan,1) P25(nan,1.02)\n")
    assert _stat_values(text) == {"listener_manager.total_filter_chains_draining": 7.0, "server.state": 0.0}


def test_a_mesh_rule_is_judged_after_every_proxy_drained(monkeypatch):
    """The value settled() returns is measured after the drain, not the first one that matched:
    a pooled connection opened under the old rule may answer between the two."""
    from msalab.mesh import Mesh

    mesh, seen = Mesh.__new__(Mesh), []
    drains = iter([{"catalog-7d9f": 7.0}, {}])
    monkeypatch.setattr(mesh, "drain_time_s", lambda namespace: 5.0)
    monkeypatch.setattr(mesh, "draining", lambda namespace: seen.append("draining?") or next(drains))
    answers = iter([403, 200, 403])
    assert mesh.settled("shop", lambda: next(answers), 200) == 403
    assert seen == ["draining?", "draining?"]


def test_a_drain_that_outlasts_the_drain_time_is_not_waited_for(monkeypatch):
    """Every drain of this change has ended once the drain time has passed: one still running
    then is another change's (a shared mesh), and waiting for it could last all class."""
    from msalab.mesh import Mesh

    mesh, polls = Mesh.__new__(Mesh), []
    monkeypatch.setattr(mesh, "drain_time_s", lambda namespace: 0.0)
    monkeypatch.setattr(mesh, "draining", lambda namespace: polls.append(1) or {"catalog-7d9f": 7.0})
    mesh.wait_drained("shop")
    assert 2 <= len(polls) <= 4  # polled once a second until the drain time (0 s) plus 2 s had passed


def test_an_answer_the_crash_cut_off_is_told_from_a_refused_connection():
    """Lab I.2 bounds the orders a crash can leave without an answer: only a request that
    reached the server can have been committed; a refused one never got there."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    def take_the_request_and_die():
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.close()  # like the crashed process: the request was read, no answer was sent
    threading.Thread(target=take_the_request_and_die, daemon=True).start()
    port = listener.getsockname()[1]
    cut_off = shop.ShopClient(f"http://127.0.0.1:{port}").order({"p-0003": 1})
    listener.close()
    refused = shop.ShopClient(f"http://127.0.0.1:{port}").order({"p-0003": 1})

    def sample(reply):
        return load.Sample(0.0, reply.ms, reply.status, "", reply.error, "order")
    assert cut_off.status == 0 and sample(cut_off).answer_lost, cut_off
    assert refused.status == 0 and not sample(refused).answer_lost, refused
    assert not load.Sample(0.0, 5.0, 201, "", "", "order").answer_lost
    for never_connected in ("ConnectTimeout: timed out", "PoolTimeout: no connection in the pool"):
        assert not load.Sample(0.0, 5.0, 0, "", never_connected, "order").answer_lost
