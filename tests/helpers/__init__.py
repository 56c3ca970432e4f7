"""What the tests share, one module per kind of thing (pytest fixtures stay in conftest.py):

* ``servers``: real servers on loopback in this process (uvicorn in a thread, several ports
  on one server, a port that never answers), ``free_port`` and ``wait_http_ok``.
* ``processes``: ``dhan-postback`` as a real process (a server to ``kill -9``, a command run
  to its end) with a clean environment.
* ``waiting``: ``eventually`` / ``wait_until``, polling a condition until it holds.
* ``updates``: order updates as JSON objects, bodies, signed headers, simulated days.
* ``lifecycles``: hypothesis strategies for one order's updates.
* ``receivers``: :class:`RecordingReceiver`, an HTTP receiver that records and misbehaves
  on purpose.
* ``outbox`` and ``dispatching``: filling an outbox, fast dispatcher settings, waiting for it
  to settle.
* ``service``: the postback service on a loopback port and its error-shape assertion.
* ``broker`` and ``relay``: a local stand-in for the broker (websocket, order book), the
  service's ingest API, and a relay running against them.
* ``dashboard_seed`` and ``dashboard_login``: a realistic delivery log, and logging in to it.

The throwaway PostgreSQL server is ``bench/postgres.py``, which the benchmarks use too.
"""
