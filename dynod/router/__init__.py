"""The HTTP front door: routes requests by ``Host`` to web dynos.

The router runs as its own process tree (``python -m dynod.router``), started by
dynod but never waiting for it: workers hold the last route table dynod wrote to
``routes.json`` and keep serving while dynod is down.

Modules, from the outside in:

``__main__``    the command line dynod uses to start the router
``supervisor``  the entry process: pid file, forks workers, restarts them, stops them
``worker``      one worker: event loop, listening socket, graceful drain
``table``       the route table file format, validated app by app
``watcher``     notices a new ``routes.json`` and swaps the table atomically
``proxy``       one client connection: parsing, keep-alive, pipelining, flow control
``exchange``    one request: choosing a dyno, retries, waits, the response relay
``upstream``    keep-alive connections to dynos and their per-dyno pool
``context``     what one worker's connections share: table, pool, deadlines
``headers``     what the router adds to and strips from requests and responses
``hcodes``      the Heroku error codes as data, and their error pages
``logline``     the per-request log line and its datagram to dynod
``settings``    timeouts and limits, one frozen value per worker
"""
