"""The pytest plugin: registered by entry point, inert unless used, fixtures work."""

from __future__ import annotations

from importlib import metadata

pytest_plugins = ["pytester"]


def test_entry_point_names_the_plugin_module():
    eps = [ep for ep in metadata.entry_points(group="pytest11") if ep.name == "skyrelay"]
    assert [ep.value for ep in eps] == ["skyrelay.pytest_plugin"]


def test_plugin_is_registered_and_inert(pytester):
    pytester.makepyfile(
        """
        import sys

        def test_untouched(request):
            plugin = request.config.pluginmanager.get_plugin("skyrelay")
            assert plugin is not None and plugin.__name__ == "skyrelay.pytest_plugin"
            assert "skyrelay._core" not in sys.modules
            assert "skyrelay.server" not in sys.modules
            assert "websockets" not in sys.modules

        def test_still_untouched():
            assert "skyrelay._core" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_fixtures_come_from_the_entry_point(pytester):
    pytester.makepyfile(
        """
        def test_needs_server(skyrelay_server):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:skyrelay")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'skyrelay_server' not found*"])


def test_fixtures_in_a_user_project(pytester):
    pytester.makepyfile(
        """
        import sys

        import pytest

        seen = {}

        def test_echo(skyrelay_server, skyrelay_client):
            @skyrelay_server.on("echo")
            def echo(conn, data):
                return data

            client = skyrelay_client()
            assert client.request("echo", {"a": 1}) == {"a": 1}
            client.subscribe("news")
            skyrelay_server.emit("headline", "hi", to="news")
            assert client.expect("headline", timeout=2) == "hi"
            assert skyrelay_server.host == "127.0.0.1" and skyrelay_server.port > 0
            seen["server"], seen["client"] = skyrelay_server, client

        def test_previous_server_and_client_were_cleaned_up():
            assert not seen["server"].running
            assert seen["client"].closed

        def test_factory(skyrelay_server_factory, skyrelay_client):
            def configure(server):
                @server.on_connect
                def refuse_all(conn):
                    return False
            server = skyrelay_server_factory(configure, heartbeat_interval=5)
            other = skyrelay_server_factory()
            assert server.port != other.port
            assert skyrelay_client(other).welcome["heartbeat_ms"] == 30000
            import websockets
            with pytest.raises(websockets.exceptions.InvalidStatus):
                skyrelay_client(server)

        def test_client_by_url_and_path(skyrelay_server, skyrelay_client):
            by_path = skyrelay_client(path="/ws/room-1")
            assert by_path.expect_frame("subscribed")["topic"] == "room-1"
            by_url = skyrelay_client(f"ws://127.0.0.1:{skyrelay_server.port}/ws/room-1")
            by_url.expect_frame("subscribed")
            assert skyrelay_server.room_size("room-1") == 2

        def test_expect_times_out_with_a_message(skyrelay_client):
            from skyrelay.testing import ExpectationTimeout
            client = skyrelay_client()
            with pytest.raises(ExpectationTimeout, match="no event frame within 0.2s"):
                client.expect("never", timeout=0.2)

        def test_a_failing_expectation_fails_the_test(skyrelay_client):
            skyrelay_client().expect("never", timeout=0.2)

        def test_core_is_loaded_once_used():
            assert "skyrelay._core" in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["*test_a_failing_expectation_fails_the_test*",
                                 "*ExpectationTimeout*no event frame within 0.2s*"])


def test_fixture_help_is_listed(pytester):
    pytester.makepyfile("def test_nothing(): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures")
    for name in ("skyrelay_server_factory", "skyrelay_server", "skyrelay_client"):
        result.stdout.fnmatch_lines([f"{name} *pytest_plugin.py*"])
