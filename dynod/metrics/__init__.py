"""Per-app request metrics computed from the router's log lines.

``lines``   the facts one router line carries (status, service time, H code)
``window``  a sliding window of one-second buckets: counts, status classes, percentiles
``registry``  one window per app, fed by dynod's router line handler
"""
