"""Watch: the delivery-folder daemon. It hears filesystem events, waits until each file is
complete, and hands settled files to the same session as ``scan``. It never decides.

- ``observers``: native events (inotify) locally, polling on network mounts;
- ``settle``: the queue of files heard, taken once closed and unchanged for the window;
- ``sidecars``: a sidecar stands for its media file, or follows it into quarantine;
- ``departures``: files that left a tree, from events and at catch-up, chained in the ledger;
- ``daemon``: the loop (lock, status, reload, back-off) and its duties.
"""

from provgate.watch.daemon import Watcher, read_status, sd_notify
from provgate.watch.observers import filesystem_type, inotify_check, wants_polling

__all__ = ["Watcher", "filesystem_type", "inotify_check", "read_status", "sd_notify",
           "wants_polling"]
