"""One module per console page, each with its `router`; `PAGES` is the list the console mounts."""

from gateway.console.pages import collections, devices, incidents, lab, map, organisations, signin, stats

# `follow` (the reporters' page) is mounted apart, outside the console's prefix.
PAGES = [signin.router, map.router, incidents.router, devices.router, stats.router, collections.router, lab.router,
         organisations.router]
