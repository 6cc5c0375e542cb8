"""The plugin's Socket.IO and SSE client fixtures, run in a user's project with pytester."""

from __future__ import annotations

pytest_plugins = ["pytester"]


def test_new_fixtures_keep_the_plugin_inert(pytester):
    pytester.makepyfile(
        """
        import sys

        def test_untouched():
            for name in ("socketio", "engineio", "httpx", "httpx_sse", "websockets", "aiohttp",
                         "skyrelay.testing", "skyrelay._core"):
                assert name not in sys.modules, name
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:anyio")
    result.assert_outcomes(passed=1)


def test_socketio_fixture(pytester):
    pytester.makepyfile(
        """
        import pytest
        import skyrelay
        import socketio

        seen = {}

        def configure(server):
            @server.on("connect")
            def check(conn):
                if (conn.auth or {}).get("token") == "nope":
                    raise skyrelay.ConnectionRefused("bad token", data={"code": 401})

            @server.on("join")
            def join(conn, room):
                conn.join(room)
                return sorted(conn.rooms)

            @server.on("pair")
            def pair(conn, data):
                server.emit("pair", args=[data, "second"], to=conn.sid)

        @pytest.fixture
        def server(skyrelay_server_factory):
            return skyrelay_server_factory(configure, client_topics="*")

        @pytest.mark.parametrize("transports", [None, ["websocket"], ["polling"]])
        def test_events_acks_rooms(server, skyrelay_sio_client, transports):
            client = skyrelay_sio_client(server, auth={"token": "t"}, transports=transports)
            assert client.sid and not client.closed
            assert "news" in client.call("join", "news")
            server.emit("headline", {"a": 1}, to="news")
            server.emit("other", 7)
            assert client.expect("other", timeout=2) == 7          # out of order is fine
            assert client.expect("headline", timeout=2) == {"a": 1}
            client.emit("pair", [1, 2])
            assert client.expect("pair") == ([1, 2], "second")
            server.emit("bare", args=[])
            assert client.expect_args("bare") == ()
            client.expect_nothing(0.2)
            seen.setdefault("clients", []).append(client)

        def test_the_clients_were_closed():
            assert len(seen["clients"]) == 3
            assert all(c.closed for c in seen["clients"])

        def test_one_publication_reaches_every_kind_of_client(
                server, skyrelay_client, skyrelay_sio_client, skyrelay_sse_client):
            sio = skyrelay_sio_client(server, auth={"token": "t"})
            sio.call("join", "ops")
            ws = skyrelay_client(server)
            ws.subscribe("ops")
            sse = skyrelay_sse_client(server, topics=["ops"])
            server.emit("alarm", {"level": 3}, to="ops")
            assert sio.expect("alarm") == ws.expect("alarm") == sse.expect("alarm") == {"level": 3}

        def test_refused(server, skyrelay_sio_client):
            with pytest.raises(socketio.exceptions.ConnectionError, match="bad token") as info:
                skyrelay_sio_client(server, auth={"token": "nope"})
            assert "'code': 401" in str(info.value)

        def test_disconnect_ends_the_wait_at_once(server, skyrelay_sio_client):
            client = skyrelay_sio_client(server, auth={"token": "t"})
            server.disconnect(client.sid, "bye")
            from skyrelay.testing import ExpectationTimeout
            with pytest.raises(ExpectationTimeout, match="disconnected"):
                client.expect("never", timeout=5)

        def test_fails_with_a_message(server, skyrelay_sio_client):
            skyrelay_sio_client(server, auth={"token": "t"}).expect("never", timeout=0.2)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["*ExpectationTimeout: no a Socket.IO event 'never' on / "
                                 "within 0.2s*"])


def test_sse_fixture(pytester):
    pytester.makepyfile(
        """
        import httpx
        import pytest

        seen = {}

        def test_topics_welcome_and_events(skyrelay_server, skyrelay_sse_client):
            stream = skyrelay_sse_client(topics=["a b", "c"])
            assert stream.status == 200 and stream.welcome["topics"] == ["a b", "c"]
            assert stream.sid == stream.welcome["sid"]
            skyrelay_server.emit("tick", {"n": 1}, to="a b")
            skyrelay_server.emit("tick", {"n": 2}, to="elsewhere")
            skyrelay_server.emit("tick", {"n": 3}, to="c")
            assert stream.expect("tick") == {"n": 1}
            event = stream.expect_event("tick")
            assert event.data == {"n": 3} and event.id == stream.last_event_id
            stream.expect_nothing(0.2)
            seen["stream"] = stream

        def test_the_stream_was_closed():
            assert seen["stream"].closed

        def test_resume_from_the_last_event_id(skyrelay_server, skyrelay_sse_client):
            first = skyrelay_sse_client(topics="t")
            skyrelay_server.emit("tick", 1, to="t")
            assert first.expect("tick") == 1
            cursor = first.last_event_id
            first.close()
            skyrelay_server.emit("tick", 2, to="t")
            skyrelay_server.emit("tick", 3, to="t")
            again = skyrelay_sse_client(topics="t", last_event_id=cursor)
            assert [again.expect("tick"), again.expect("tick")] == [2, 3]

        def test_a_refusal_raises_with_its_status(skyrelay_server_factory, skyrelay_sse_client):
            closed = skyrelay_server_factory()   # opens no topic to clients
            with pytest.raises(httpx.HTTPStatusError) as info:
                skyrelay_sse_client(closed, topics=["secret"])
            assert info.value.response.status_code == 403
            assert info.value.response.json()["error"] == "forbidden"

        def test_the_end_of_the_stream(skyrelay_server_factory, skyrelay_sse_client):
            server = skyrelay_server_factory(client_topics="*")
            stream = skyrelay_sse_client(server, topics=["x"])
            server.stop()
            stream.expect_end(timeout=5)
            from skyrelay.testing import ExpectationTimeout
            with pytest.raises(ExpectationTimeout, match="the stream ended"):
                stream.expect("tick", timeout=5)

        def test_by_url(skyrelay_server, skyrelay_sse_client):
            url = f"http://127.0.0.1:{skyrelay_server.port}/sse/solo"
            assert skyrelay_sse_client(url).welcome["topics"] == ["solo"]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)


def test_fixture_help_lists_the_clients(pytester):
    pytester.makepyfile("def test_nothing(): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures")
    for name in ("skyrelay_sio_client", "skyrelay_sse_client", "skyrelay_async_client",
                 "skyrelay_async_sio_client"):
        result.stdout.fnmatch_lines([f"{name} *pytest_plugin.py*"])
