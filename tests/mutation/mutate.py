#!/usr/bin/env python3
"""Plants deliberate bugs in raft-core and kv-service, one at a time, and reports which suite
catches each.

Usage: python3 tests/mutation/mutate.py [--seeds N] [--sim-only] [name ...]

--sim-only skips raft-core's own unit and contract tests, to see which simulator suite and seed
catch each bug on their own.

For every mutant it patches the source, runs raft-core's own tests and then the simulator
suites (for a kv-service mutant: the KV simulator suites alone) in release mode (stopping at the first failing seed: RAFT_FAIL_FAST=1), records the first
failing test and seed, and restores the file. A mutant that no
test catches is reported as SURVIVED: a hole in the suites.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = "raft-core/src/node.rs"
PROGRESS = "raft-core/src/progress.rs"
READ = "raft-core/src/read.rs"
MACHINE = "kv-service/src/machine.rs"
SERVICE = "kv-service/src/service.rs"

# (name, file, original text, mutated text)
MUTANTS = [
    ("figure8-commit-rule: commit entries of earlier terms by counting replicas", NODE,
     "if candidate > self.commit_index && self.log.term(candidate) == Some(self.term) {",
     "if candidate > self.commit_index {"),
    ("up-to-date vote check dropped", NODE,
     "let granted = can_vote && self.log.is_up_to_date(last_log_index, last_log_term);",
     "let granted = can_vote;"),
    ("truncate on every AppendEntries", NODE,
     "                Some(term) if term == entry.term => continue,\n                Some(_) => {",
     "                Some(_) => {"),
    ("one vote per term dropped", NODE,
     "let can_vote = self.voted_for == Some(candidate)\n            || (self.voted_for.is_none() && self.leader_id.is_none());",
     "let can_vote = true;"),
    ("leader counts its own entries before they are durable", NODE,
     "matches.push(self.durable_index);",
     "matches.push(self.log.last_index());"),
    ("vote granted before it is durable", NODE,
     "        self.send_backed(candidate, MessageBody::VoteResponse { granted });",
     "        self.send(candidate, MessageBody::VoteResponse { granted });"),
    ("follower commit not capped by the entries it verified", NODE,
     "let new_commit = leader_commit.min(last_new);",
     "let new_commit = leader_commit.min(self.log.last_index());"),
    ("higher term does not clear the vote", NODE,
     "            self.term = term;\n            self.voted_for = None;",
     "            self.term = term;"),
    ("stale rejections not ignored, backtracking by one", NODE,
     "                if pr.is_stale_rejection(prev_log_index) {\n                    return;\n                }",
     "                let _ = conflict_index;\n                pr.become_probe(prev_log_index);\n                if true {\n                    self.send_append(follower);\n                    return;\n                }"),
    ("lost appends never retransmitted", PROGRESS,
     "if self.inflight.is_empty() || heard {",
     "if true {"),
    ("byte bound on appends in flight ignored", PROGRESS,
     "self.inflight.len() >= max_inflight || self.inflight_bytes >= max_inflight_bytes",
     "self.inflight.len() >= max_inflight"),
    ("ReadIndex served without the heartbeat round", NODE,
     "let quorum_seq = quorum::committed_index(&mut acked);",
     "let quorum_seq = self.reads.seq();"),
    ("reads confirmed before the leader commits in its term", NODE,
     "        if self.log.term(self.commit_index) != Some(self.term) {\n            return;\n        }\n        let Some(seq) = self.reads.start_round(self.commit_index) else {",
     "        let Some(seq) = self.reads.start_round(self.commit_index) else {"),
    ("forwarded read released before the follower applies the read index", READ,
     ".partition(|&(_, index)| index <= applied);",
     ".partition(|_| true);"),
    ("restarted node votes while a lease it backed may hold", NODE,
     "if vote_request && self.config.lease_reads && self.ticks < self.lease_quiet_ticks() {",
     "if vote_request && self.config.lease_reads && self.ticks < 1 {"),
    ("stale snapshot installed", NODE,
     "        if last_index <= self.commit_index {\n            // Stale or duplicated",
     "        if last_index < self.log.snapshot_index() {\n            // Stale or duplicated"),
    ("log suffix kept after a conflicting snapshot", NODE,
     "let keep_suffix = self.log.term(meta.last_index) == Some(meta.last_term);",
     "let keep_suffix = true;"),
    ("snapshot chunk offsets not checked", NODE,
     "        if offset != expected {\n            let result = SnapshotResult::Continue {",
     "        if false {\n            let result = SnapshotResult::Continue {"),
    ("snapshot acknowledged before it is durable", NODE,
     "            SnapshotResult::Installed => self.send_backed(leader, body),",
     "            SnapshotResult::Installed => self.send(leader, body),"),
    # The three bugs an outside check found (issue 9), each restored as it was.
    ("bug: answers to an earlier term's requests count (stale read echo after a restart)", NODE,
     "            if request_term != self.term {",
     "            if request_term != self.term && false {"),
    ("bug: forwarded reads numbered from the same point at every start", NODE,
     "        let reads = ReadTracker::new(rng.next_u64());",
     "        let reads = ReadTracker::new(1);"),
    ("bug: a repeated vote grant restarts the voter's election timer", NODE,
     "        if self.voted_for != Some(candidate) {\n            // A first grant",
     "        if true {\n            // A first grant"),
    ("bug: acknowledgement leaves before the write behind it is durable", NODE,
     "        self.send_backed(\n            leader,\n            MessageBody::AppendResponse {",
     "        self.send(\n            leader,\n            MessageBody::AppendResponse {"),
]

# Bugs in the KV service; the KV simulator suites must catch each (they run alone for these).
KV_MUTANTS = [
    ("kv: dedup check dropped (a retried write executes again)", MACHINE,
     "        if let Some(reply) = s.replies.get(&seq) {\n            return Ok(Response::Written(reply.clone()));\n        }",
     "        if let Some(reply) = s.replies.get(&seq).filter(|_| false) {\n            return Ok(Response::Written(reply.clone()));\n        }"),
    ("kv: sessions left out of the snapshot", MACHINE,
     "            sessions: SessionTable::from_sessions(s.sessions),",
     "            sessions: SessionTable::from_sessions({ let _ = s.sessions; Default::default() }),"),
    ("kv: Get answered from local state without read_index", SERVICE,
     "            self.pending_reads += 1;\n            self.new_reads.push((id, key));",
     "            let value = self.machine.get(&key).map(<[u8]>::to_vec);\n            self.reply(id, Ok(Response::Value(value)));"),
    ("kv: a waiting request answered by another term's entry at its index", SERVICE,
     "            Some(reply) if proposal.term == entry.term => reply,",
     "            Some(reply) => reply,"),
    ("kv: log clock (session expiry) taken from each replica's own clock", SERVICE,
     "            self.machine.apply(entry)\n",
     "            match entry.command().and_then(|b| codec::decode::<LogCommand>(b).ok()) {\n"
     "                Some(mut c) if entry.index > self.machine.applied_index() => {\n"
     "                    c.stamp_ms = self.now_ms;\n"
     "                    Some(self.machine.apply_command(entry.index, &c))\n"
     "                }\n"
     "                _ => self.machine.apply(entry),\n"
     "            }\n"),
]
KV_SUITES = ["-p", "raft-tests", "--test", "kv_lab", "--test", "kv_beyond"]


def run(cmd, env):
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


def first_failure(output):
    """The first '<suite>::<test>: ... seed S: message' report, or the first failed test."""
    m = re.search(r"^(\S+::\S+): \d+ of \d+ seeds failed\n\s+seed (\d+): (.*)$", output, re.M)
    if m:
        return f"{m.group(1)} seed {m.group(2)}: {m.group(3)[:160]}"
    m = re.search(r"^test (\S+) \.\.\. FAILED", output, re.M)
    if m:
        return f"{m.group(1)} failed"
    if "error[E" in output or "error: could not compile" in output:
        return "DID NOT COMPILE"
    return None


def main():
    args = sys.argv[1:]
    seeds = "200"
    if args[:1] == ["--seeds"]:
        seeds, args = args[1], args[2:]
    packages = ["-p", "raft-core", "-p", "raft-tests"]
    if args[:1] == ["--sim-only"]:
        packages, args = ["-p", "raft-tests"], args[1:]
    env = dict(os.environ, RAFT_SEEDS=seeds, RAFT_FAIL_FAST="1")
    env.setdefault("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/raft-target"))
    results = []
    plan = [(m, packages) for m in MUTANTS] + [(m, KV_SUITES) for m in KV_MUTANTS]
    for (name, path, original, mutated), targets in plan:
        if args and not any(a in name for a in args):
            continue
        full = os.path.join(ROOT, path)
        source = open(full).read()
        if source.count(original) != 1:
            results.append((name, "PATCH DOES NOT APPLY (source changed?)"))
            continue
        try:
            open(full, "w").write(source.replace(original, mutated))
            out = run(["cargo", "test", "--release"] + targets, env)
            caught = first_failure(out.stdout + out.stderr)
            results.append((name, caught or "SURVIVED"))
        finally:
            open(full, "w").write(source)
        print(f"{name}: {results[-1][1]}", flush=True)
    survived = [n for n, r in results if r in ("SURVIVED", "DID NOT COMPILE") or r.startswith("PATCH")]
    print(f"\n{len(results) - len(survived)} of {len(results)} mutants caught")
    sys.exit(1 if survived else 0)


if __name__ == "__main__":
    main()
