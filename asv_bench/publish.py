#!/usr/bin/env python
"""``asv publish`` into ``docs/asv/``, made to work offline.

asv 0.6's ``index.html`` loads jQuery, Flot (+ time, selection, categories,
orderBars), stupidtable, blueimp-md5 and Bootstrap 3 from CDNs, so the page is
blank without network. This runs ``asv publish`` (``html_dir`` of
``asv.conf.json`` is ``../docs/asv``), copies the vendored copies in
``www_vendor/`` (from the npm registry; jQuery 3.3.1, orderBars 1.0.0,
blueimp-md5 2.19.0 and Bootstrap 3.1.1 are byte-identical to the CDN files, their
SRI hashes match; Flot 0.8.3 is the unminified release, stupidtable 1.1.3 the
nearest release to the CDN's 1.0.1) into ``docs/asv/vendor/`` and points
``index.html`` at them. It fails if any script or stylesheet still comes from
another host::

    python asv_bench/publish.py          # then: python -m http.server -d docs/asv 8080
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENDOR = os.path.join(HERE, "www_vendor")

#: CDN file name -> vendored path (relative to html_dir).
LOCAL = {
    "jquery-3.3.1.min.js": "vendor/jquery.min.js",
    "jquery.flot.min.js": "vendor/jquery.flot.js",
    "jquery.flot.time.min.js": "vendor/jquery.flot.time.js",
    "jquery.flot.selection.min.js": "vendor/jquery.flot.selection.js",
    "jquery.flot.categories.min.js": "vendor/jquery.flot.categories.js",
    "jquery.flot.orderBars.js": "vendor/jquery.flot.orderBars.js",
    "stupidtable.min.js": "vendor/stupidtable.min.js",
    "md5.min.js": "vendor/md5.min.js",
    "bootstrap.min.js": "vendor/bootstrap/js/bootstrap.min.js",
    "bootstrap.min.css": "vendor/bootstrap/css/bootstrap.min.css",
}

_TAG = re.compile(r'<(script|link)\b[^>]*?(?:src|href)="(https?://[^"]+)"[^>]*>', re.S)


def localize(html: str) -> str:
    def repl(m):
        tag, url = m.group(1), m.group(2)
        name = url.rsplit("/", 1)[-1]
        if tag == "link" and 'rel="stylesheet"' not in m.group(0):
            return m.group(0)
        if name not in LOCAL:
            raise SystemExit(f"publish.py: no vendored copy of {url}")
        if tag == "script":
            return f'<script src="{LOCAL[name]}" onerror="js_load_failure()">'
        return f'<link rel="stylesheet" href="{LOCAL[name]}">'

    html = _TAG.sub(repl, html)
    left = [m.group(2) for m in _TAG.finditer(html) if m.group(1) == "script" or 'rel="stylesheet"' in m.group(0)]
    if left:
        raise SystemExit(f"publish.py: still loaded from another host: {left}")
    return html


def html_dir(config: str) -> str:
    sys.path.insert(0, HERE)
    try:
        from gate import _load_json5
    finally:
        sys.path.pop(0)
    conf = _load_json5(config)
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config)), conf.get("html_dir", "html")))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config = os.path.join(HERE, "asv.conf.json")
    if "--config" in argv:
        config = argv[argv.index("--config") + 1]
    else:
        argv = ["--config", config] + argv
    asv = os.path.join(os.path.dirname(sys.executable), "asv")
    asv = asv if os.path.exists(asv) else "asv"
    subprocess.run([asv, "publish"] + argv, cwd=HERE, check=True)
    out = html_dir(config)
    shutil.copytree(VENDOR, os.path.join(out, "vendor"), dirs_exist_ok=True)
    index = os.path.join(out, "index.html")
    with open(index, encoding="utf-8") as f:
        html = f.read()
    with open(index, "w", encoding="utf-8") as f:
        f.write(localize(html))
    print(f"publish.py: {out} (index.html uses vendor/, no CDN)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
