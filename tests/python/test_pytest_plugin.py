"""The pytest plugin: registered by entry point, inert unless used, fixtures work."""

from __future__ import annotations

pytest_plugins = ["pytester"]


def test_plugin_is_registered_and_inert(pytester):
    pytester.makepyfile(
        """
        import sys

        def test_untouched(request):
            assert request.config.pluginmanager.has_plugin("skyrelay")
            assert "skyrelay._core" not in sys.modules
            assert "websockets" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_fixtures_in_a_user_project(pytester):
    pytester.makepyfile(
        """
        def test_echo(skyrelay_server, skyrelay_client):
            @skyrelay_server.on("echo")
            def echo(conn, data):
                return data

            client = skyrelay_client()
            assert client.request("echo", {"a": 1}) == {"a": 1}
            client.subscribe("news")
            skyrelay_server.emit("headline", "hi", to="news")
            assert client.expect("headline", timeout=2) == "hi"

        def test_factory(skyrelay_server_factory, skyrelay_client):
            def configure(server):
                @server.on_connect
                def refuse_all(conn):
                    return False
            server = skyrelay_server_factory(configure, heartbeat_interval=5)
            import pytest, websockets
            with pytest.raises(websockets.exceptions.InvalidStatus):
                skyrelay_client(server)

        def test_expect_times_out_with_a_message(skyrelay_client):
            import pytest
            from skyrelay.testing import ExpectationTimeout
            client = skyrelay_client()
            with pytest.raises(ExpectationTimeout, match="no event frame within 0.2s"):
                client.expect("never", timeout=0.2)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
