"""Drives a running Label Studio through its own REST API with ssc-serve as its ML backend:
the steps a person takes in the browser, done non-interactively (scripts/label-studio-demo.sh
runs it; tools/tests/label_studio_live.rs runs it as a test).

    python label_studio_drive.py --ls URL --token TOKEN --ml URL --images DIR \
        --document-root DIR --corrections DIR [--keep]

1. creates a project whose labeling config names the served model's classes (from /setup),
   with a non-default data key (`$photo`) and control names;
2. adds a local-files source storage on IMAGES (a subfolder of the document root, as
   Label Studio requires) and syncs it;
3. connects ssc-serve as the project's ML backend and registers a webhook to its /webhook
   for annotation events;
4. retrieves predictions for every task (the Data Manager action) and checks each one: one
   brush result per class found, sized as the image;
5. submits the first task's prediction as an annotation (an annotator accepting it) and
   checks that ssc-serve stored it: `task-<id>.png` decodes to the prediction's mask, the
   sidecar names the annotation;
6. deletes that annotation and checks the correction is gone.

Exits 0 when every check passes, 1 with the failed step otherwise. Prints what it does.
Uses the standard library, and for step 5 Pillow and the SDK that Label Studio installs.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ls", required=True, help="Label Studio URL")
    ap.add_argument("--token", required=True, help="Label Studio API token (legacy)")
    ap.add_argument("--ml", required=True, help="ssc-serve URL, as Label Studio reaches it")
    ap.add_argument("--images", required=True, help="image folder (under the document root)")
    ap.add_argument("--corrections", required=True, help="ssc-serve's --corrections folder")
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    ls = a.ls.rstrip("/")

    def api(method, path, body=None, ok=(200, 201, 204)):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            ls + path,
            data=data,
            method=method,
            headers={"Authorization": "Token " + a.token, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=a.timeout) as r:
                text = r.read().decode()
                status = r.status
        except urllib.error.HTTPError as e:
            text, status = e.read().decode(errors="replace"), e.code
        if status not in ok:
            fail(f"{method} {path}: HTTP {status}: {text[:800]}")
        return json.loads(text) if text.strip() else None

    def ml_get(path):
        with urllib.request.urlopen(a.ml.rstrip("/") + path, timeout=a.timeout) as r:
            return json.load(r)

    step("ssc-serve health")
    health = ml_get("/health")
    if health.get("status") != "UP":
        fail(f"ssc-serve /health: {health}")
    classes = health.get("classes") or []
    labels = [c for c in classes if c.lower() != "background"]
    if not labels:
        fail(f"ssc-serve /health names no classes: {health}")
    print(f"   model {health.get('model_class')} {health.get('model_version')}: {labels}")

    step("create the project")
    label_config = (
        '<View>\n  <Image name="pic" value="$photo" zoom="true"/>\n'
        '  <BrushLabels name="paint" toName="pic">\n'
        + "".join(f'    <Label value="{c}"/>\n' for c in labels)
        + "  </BrushLabels>\n</View>\n"
    )
    project = api("POST", "/api/projects", {"title": "ssc live test", "label_config": label_config})
    pid = project["id"]
    print(f"   project {pid}")

    step("local-files storage on " + a.images)
    storage = api(
        "POST",
        "/api/storages/localfiles",
        {
            "project": pid,
            "title": "images",
            "path": os.path.abspath(a.images),
            "regex_filter": r".*\.(png|jpg|jpeg)$",
            "use_blob_urls": True,
        },
    )
    api("POST", f"/api/storages/localfiles/{storage['id']}/sync", {})
    def list_tasks():
        page = api("GET", f"/api/tasks?project={pid}&page_size=100")
        # a list in older versions, {"tasks": [...], "total": n, ...} in 1.23
        return page.get("tasks", []) if isinstance(page, dict) else page

    tasks = wait_for(list_tasks, a.timeout)
    if not tasks:
        fail("the storage sync imported no task")
    print(f"   {len(tasks)} tasks")
    # local-files storage fills the first data key of the config, here `photo`
    for t in tasks:
        if "photo" not in t["data"]:
            fail(f"task {t['id']} has no data.photo: {t['data']}")

    step("connect ssc-serve as the ML backend, and its webhook")
    ml = api("POST", "/api/ml", {"project": pid, "url": a.ml, "title": "ssc-serve"})
    print(f"   ML backend {ml['id']}: state {ml.get('state')}")
    api(
        "POST",
        "/api/webhooks",
        {
            "project": pid,
            "url": a.ml.rstrip("/") + "/webhook",
            "send_payload": True,
            "send_for_all_actions": False,
            "actions": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"],
        },
    )

    step("retrieve predictions for every task")
    api(
        "POST",
        f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
        {"selectedItems": {"all": True, "excluded": []}, "project": pid},
    )
    predictions = {}
    for t in tasks:
        preds = api("GET", f"/api/predictions?task={t['id']}")
        if not preds:
            fail(f"task {t['id']} ({t['data']['photo']}): no prediction stored")
        p = preds[-1]
        res = p.get("result") or []
        if not res:
            fail(f"task {t['id']}: prediction without results: {p}")
        for r in res:
            if r.get("type") != "brushlabels" or r.get("from_name") != "paint" or r.get("to_name") != "pic":
                fail(f"task {t['id']}: unexpected result {json.dumps(r)[:300]}")
            if r["value"]["brushlabels"][0] not in labels:
                fail(f"task {t['id']}: label {r['value']['brushlabels']} is not a class")
        predictions[t["id"]] = p
        print(f"   task {t['id']}: {len(res)} brush result(s), model_version {p.get('model_version')}")

    step("submit the first task's prediction as an annotation")
    tid = tasks[0]["id"]
    result = predictions[tid]["result"]
    ann = api("POST", f"/api/tasks/{tid}/annotations", {"result": result, "ground_truth": False})
    aid = ann["id"]
    meta = os.path.join(a.corrections, f"task-{tid}.json")
    png = os.path.join(a.corrections, f"task-{tid}.png")
    rec = wait_for(lambda: read_json(meta), a.timeout)
    if rec is None:
        fail(f"ssc-serve stored no correction for task {tid} ({meta})")
    if rec.get("annotation") != aid or rec.get("task") != tid:
        fail(f"{meta}: names task {rec.get('task')} annotation {rec.get('annotation')}, "
             f"expected {tid} / {aid}")
    check_png(png, result, labels)
    print(f"   {png}: annotation {aid}, classes {rec.get('classes')}")

    step("delete the annotation")
    api("DELETE", f"/api/annotations/{aid}")
    gone = wait_for(lambda: (not os.path.exists(meta)) or None, a.timeout)
    if not gone:
        fail(f"{meta} still there after the annotation was deleted")
    print("   correction removed")
    print("\nall Label Studio checks passed")


def check_png(path, result, labels):
    """The stored label map equals the brushes, decoded with the Label Studio SDK's own RLE
    reader (class index = position in the model's labels + 1, later brushes win)."""
    from PIL import Image

    im = Image.open(path)
    w, h = result[0]["original_width"], result[0]["original_height"]
    if im.size != (w, h):
        fail(f"{path}: {im.size}, expected {(w, h)}")
    if im.mode != "P":
        fail(f"{path}: a {im.mode} PNG, expected a palette PNG")
    got = list(im.tobytes())
    from label_studio_sdk.converter.brush import decode_rle  # installed with Label Studio

    want = [0] * (w * h)
    for r in result:
        cls = labels.index(r["value"]["brushlabels"][0]) + 1
        alpha = decode_rle(r["value"]["rle"])[3::4]
        for i, v in enumerate(alpha):
            if v >= 128:
                want[i] = cls
    if got != want:
        bad = sum(g != x for g, x in zip(got, want))
        fail(f"{path}: {bad} pixels differ from the annotation's brushes")


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def wait_for(fn, timeout):
    t0 = time.time()
    while True:
        v = fn()
        if v or time.time() - t0 > timeout:
            return v
        time.sleep(0.5)


def step(s):
    print(f"== {s}", flush=True)


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
