"""The relay's trigger on loopback: what Lambda's event source mapping does for the relay in
AWS, against DynamoDB Local's stream (test utility, run by tests/aws-functions/stack.sh).

It reads the table's stream (DescribeStream, GetShardIterator, GetRecords), keeps only the
records that pass the trigger's FilterCriteria, batches them, and invokes the relay under
`cargo lambda watch` with a real DynamoDB Streams event. The trigger's settings are read
from template.yaml (the RelayFunction's DynamoDB event), so the test follows the template:
StartingPosition, BatchSize, MaximumRetryAttempts, MaximumRecordAgeInSeconds,
BisectBatchOnFunctionError, FilterCriteria. As in Lambda, a shard is read four times a
second, records of a shard are delivered in order, a failed batch is retried (bisected when
the template says so) and blocks its shard until it succeeds or is given up, and reading
resumes after the last delivered record when the stream is unreachable for a while.

    python stream_trigger.py --template template.yaml --function RelayFunction \
        --endpoint http://127.0.0.1:8000 --table sightline \
        --invoke http://127.0.0.1:9000/2015-03-31/functions/relay/invocations

Prints `ready` once it reads every shard; logs one line per invocation.
"""

import argparse
import base64
import datetime
import json
import sys
import time
import urllib.error
import urllib.request

import boto3
import botocore.config
import botocore.exceptions
import yaml

POLL_INTERVAL_SECS = 0.25
DESCRIBE_EVERY_SECS = 5.0


def log(msg):
    print(f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='milliseconds')} {msg}", flush=True)


# --- the template's trigger ----------------------------------------------------------------


def trigger_settings(template_path, function):
    """The properties of the function's DynamoDB event in the SAM template."""

    class Loader(yaml.SafeLoader):
        pass

    # CloudFormation short forms (!Ref, !GetAtt, …) are not needed here: read them as null.
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    with open(template_path, encoding="utf-8") as f:
        template = yaml.load(f, Loader=Loader)  # noqa: S506 - SafeLoader subclass
    events = template["Resources"][function]["Properties"]["Events"]
    found = [e["Properties"] for e in events.values() if e.get("Type") == "DynamoDB"]
    if len(found) != 1:
        raise SystemExit(f"{function} must have exactly one DynamoDB event in {template_path}")
    props = found[0]
    patterns = [json.loads(f["Pattern"]) for f in (props.get("FilterCriteria") or {}).get("Filters", [])]
    for p in patterns:
        check_pattern(p)
    return {
        "starting_position": props.get("StartingPosition", "LATEST"),
        "batch_size": int(props.get("BatchSize", 100)),
        "max_retries": int(props.get("MaximumRetryAttempts", -1)),
        "max_record_age": int(props.get("MaximumRecordAgeInSeconds", -1)),
        "bisect": bool(props.get("BisectBatchOnFunctionError", False)),
        "patterns": patterns,
    }


def check_pattern(pattern):
    """Refuses filter syntax this utility does not implement, rather than misapplying it."""
    for value in pattern.values():
        if isinstance(value, dict):
            check_pattern(value)
        elif isinstance(value, list):
            for v in value:
                if isinstance(v, dict) and set(v) - {"prefix", "exists"}:
                    raise SystemExit(f"unsupported filter operator {v} (only values, prefix, exists)")
        else:
            raise SystemExit(f"a filter pattern's leaves must be lists: {value!r}")


def matches(pattern, event):
    """Lambda's event filtering: every key of the pattern must match; a leaf list matches
    when any of its values equals the field or any operator holds."""
    for key, want in pattern.items():
        present = isinstance(event, dict) and key in event
        if isinstance(want, dict):
            if not present or not matches(want, event[key]):
                return False
            continue
        ok = False
        for v in want:
            if isinstance(v, dict) and "exists" in v:
                ok = ok or (present == bool(v["exists"]))
            elif not present:
                continue
            elif isinstance(v, dict):
                ok = ok or (isinstance(event[key], str) and event[key].startswith(v["prefix"]))
            else:
                ok = ok or event[key] == v
        if not ok:
            return False
    return True


def passes(settings, record):
    return not settings["patterns"] or any(matches(p, record) for p in settings["patterns"])


# --- the event Lambda sends --------------------------------------------------------------


def wire(value):
    """A GetRecords record as JSON in Lambda's event format (times in epoch seconds,
    binary attributes base64)."""
    if isinstance(value, dict):
        return {k: wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wire(v) for v in value]
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return value


def invoke(url, records):
    """True when the relay handled the batch; a function error or an unreachable runtime
    is a failure, as in Lambda."""
    body = json.dumps({"Records": records}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, text, fn_error = resp.status, resp.read().decode(errors="replace"), resp.headers.get("x-amz-function-error")
    except urllib.error.HTTPError as e:
        status, text, fn_error = e.code, e.read().decode(errors="replace"), e.headers.get("x-amz-function-error")
    except (urllib.error.URLError, OSError) as e:
        status, text, fn_error = None, str(e), None
    ms = (time.monotonic() - t0) * 1000
    ok = status == 200 and not fn_error and '"errorType"' not in text
    log(f"invoke records={len(records)} status={status} ok={ok} ms={ms:.0f} answer={text[:300]!r}")
    return ok


# --- the stream ------------------------------------------------------------------------------


class Shard:
    def __init__(self, shard_id, parent):
        self.id = shard_id
        self.parent = parent
        self.iterator = None
        self.last_seq = None  # the last record delivered (or filtered out), for resuming
        self.closed = False


class Trigger:
    def __init__(self, args, settings):
        self.args = args
        self.settings = settings
        config = botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10)
        self.ddb = boto3.client("dynamodb", endpoint_url=args.endpoint, config=config)
        self.streams = boto3.client("dynamodbstreams", endpoint_url=args.endpoint, config=config)
        self.arn = None
        self.shards = {}
        self.described_at = 0.0
        self.shard_ended = False

    def describe(self, first=False):
        if self.arn is None:
            self.arn = self.ddb.describe_table(TableName=self.args.table)["Table"].get("LatestStreamArn")
            if not self.arn:
                raise SystemExit(f"table {self.args.table} has no stream: the relay would never run")
        found, start = [], None
        while True:
            kw = {"StreamArn": self.arn}
            if start:
                kw["ExclusiveStartShardId"] = start
            desc = self.streams.describe_stream(**kw)["StreamDescription"]
            found += desc["Shards"]
            start = desc.get("LastEvaluatedShardId")
            if not start:
                break
        for s in found:
            if s["ShardId"] in self.shards:
                continue
            shard = Shard(s["ShardId"], s.get("ParentShardId"))
            ended = "EndingSequenceNumber" in s["SequenceNumberRange"]
            if first and ended:
                continue  # LATEST: what was written before the trigger existed is not read
            position = self.settings["starting_position"] if first else "TRIM_HORIZON"
            shard.iterator = self.streams.get_shard_iterator(
                StreamArn=self.arn, ShardId=shard.id, ShardIteratorType=position
            )["ShardIterator"]
            self.shards[shard.id] = shard
        self.described_at = time.monotonic()

    def resume(self, shard):
        """A fresh iterator after the last delivered record (the old one expired or the
        stream was unreachable)."""
        if shard.last_seq:
            kw = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": shard.last_seq}
        else:
            kw = {"ShardIteratorType": "LATEST"}
        shard.iterator = self.streams.get_shard_iterator(StreamArn=self.arn, ShardId=shard.id, **kw)["ShardIterator"]

    def readable(self, shard):
        """A child shard is read only once its parent is read to its end (ordering)."""
        parent = self.shards.get(shard.parent) if shard.parent else None
        return not shard.closed and (parent is None or parent.closed)

    def poll_shard(self, shard):
        if shard.iterator is None:
            self.resume(shard)
        out = self.streams.get_records(ShardIterator=shard.iterator, Limit=1000)
        records = out.get("Records", [])
        shard.iterator = out.get("NextShardIterator")
        if shard.iterator is None:
            shard.closed = True
            self.shard_ended = True  # its children are found at the next describe
        if not records:
            return
        events = []
        for r in records:
            event = wire(r)
            event["eventSourceARN"] = self.arn
            if passes(self.settings, event):
                events.append(event)
        n = self.settings["batch_size"]
        for i in range(0, len(events), n):
            self.deliver(events[i : i + n])
        shard.last_seq = records[-1]["dynamodb"]["SequenceNumber"]

    def deliver(self, batch):
        """Invokes until the batch is handled; a failure is retried with backoff, bisected
        when the template says so, and given up after MaximumRetryAttempts retries or once
        its records are older than MaximumRecordAgeInSeconds."""
        pending = [(batch, 0)]
        while pending:
            records, retries = pending.pop(0)
            max_age = self.settings["max_record_age"]
            if max_age >= 0:
                now = time.time()
                fresh = [r for r in records if now - r["dynamodb"].get("ApproximateCreationDateTime", now) <= max_age]
                if len(fresh) < len(records):
                    log(f"given up: {len(records) - len(fresh)} records older than {max_age} s")
                records = fresh
            if not records or invoke(self.args.invoke, records):
                continue
            if 0 <= self.settings["max_retries"] <= retries:
                log(f"given up: {len(records)} records after {retries} retries")
                continue
            time.sleep(min(0.2 * 2**retries, 2.0))
            if self.settings["bisect"] and len(records) > 1:
                half = len(records) // 2
                pending[0:0] = [(records[:half], retries + 1), (records[half:], retries + 1)]
            else:
                pending.insert(0, (records, retries + 1))

    def run(self):
        while True:
            try:
                self.describe(first=True)
                break
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
                log(f"stream not readable yet: {e}")
                time.sleep(0.5)
        log(f"ready: {self.arn}, {len(self.shards)} shards, settings {json.dumps(self.settings)}")
        print("ready", flush=True)
        while True:
            started = time.monotonic()
            try:
                if started - self.described_at > DESCRIBE_EVERY_SECS or self.shard_ended:
                    self.shard_ended = False
                    self.describe()
                for shard in list(self.shards.values()):
                    if self.readable(shard):
                        try:
                            self.poll_shard(shard)
                        except self.streams.exceptions.ExpiredIteratorException:
                            shard.iterator = None
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
                log(f"stream unreachable, will resume after the last delivered record: {e}")
                for shard in self.shards.values():
                    shard.iterator = None
                time.sleep(1.0)
            time.sleep(max(0.0, POLL_INTERVAL_SECS - (time.monotonic() - started)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--template", required=True)
    p.add_argument("--function", default="RelayFunction")
    p.add_argument("--endpoint", required=True, help="DynamoDB Local's URL")
    p.add_argument("--table", required=True)
    p.add_argument("--invoke", required=True, help="the relay's invoke URL under cargo lambda watch")
    args = p.parse_args()
    Trigger(args, trigger_settings(args.template, args.function)).run()


if __name__ == "__main__":
    sys.exit(main())
