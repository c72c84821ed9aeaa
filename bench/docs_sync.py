"""Benchmark of the docs sync against the local fake GitHub (prints figures; not a test).

    python bench/docs_sync.py                      # 10 repositories of 30 doc files, hashing embedder
    python bench/docs_sync.py --repos 10 --files 30 --changed 3 --runs 5 --embedder fastembed

Per run it prints the API calls per repository and the time:
1. first run: full feed (commits + recursive tree + one raw fetch per doc file);
2. no change: target 1 call per repository (the commits request answered 304 to If-None-Match);
3. a commit per repository modifying/adding ``--changed`` files and deleting one: target 2 + changed files
   (commits + compare + one raw fetch per file to index; a deletion costs nothing);
4. no change again, ``--runs`` times: median and worst time of a no-change run over all repositories.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins" / "pi_docs" / "tests"))

from fake_github import FakeGitHub, GitRepo, serve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", type=int, default=10)
    parser.add_argument("--files", type=int, default=30, help="doc files per repository")
    parser.add_argument("--changed", type=int, default=3, help="files modified or added per repository in the change run")
    parser.add_argument("--runs", type=int, default=5, help="no-change runs timed")
    parser.add_argument("--embedder", default="hashing", help="PI_EMBEDDER (hashing: no model; fastembed: the real one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pi-docs-bench-") as tmp:
        root = Path(tmp)
        fake = FakeGitHub()
        repos = {}
        for number in range(args.repos):
            repo = GitRepo(root / f"repo{number}")
            pages = {
                f"docs/section-{n % 5}/page-{n}.mdx": f"---\ntitle: Page {n}\n---\n# Page {n}\n\nRepository {number}, page {n}.\n"
                for n in range(args.files)
            }
            repo.commit("docs", {**pages, "README.md": "# not docs\n", "src/main.py": "pass\n"})
            fake.add_repo(f"bench/repo{number}", repo)
            repos[f"bench/repo{number}"] = repo
        server, _thread = serve(fake)
        os.environ.update(
            PI_DATA_DIR=str(root / "pi-data"),
            PI_DOCS_REPOS=",".join(repos),
            PI_GITHUB_API_URL=fake.api_url,
            PI_GITHUB_RAW_URL=fake.raw_url,
            PI_EMBEDDER=args.embedder,
        )
        for name in ("PI_DATABASE_URL", "PI_SINKS", "OPENSEARCH_URL"):
            os.environ.pop(name, None)
        from pi_docs.sync import DocsSync

        from pi_framework.settings import get_settings

        settings = get_settings()

        def run(label: str, expected: str) -> float:
            started = time.perf_counter()
            results = DocsSync(settings).run()
            seconds = time.perf_counter() - started
            calls = sorted({r.api_calls for r in results})
            failed = [r.repo for r in results if r.status == "failed"]
            print(f"{label:<34} API calls per repository: {calls} (target {expected}); {seconds:.3f}s for {len(results)} repositories"
                  + (f"; FAILED: {failed}" if failed else ""))  # fmt: skip
            return seconds

        print(f"{args.repos} repositories x {args.files} doc files, embedder {args.embedder}, fake GitHub at {fake.api_url}")
        run("1. first run (full feed)", f"2 + {args.files} files")
        run("2. no change", "1 (304)")
        for name, repo in repos.items():
            (repo.path / "docs/section-0/page-0.mdx").unlink()
            edits = {f"docs/section-1/page-{n}.mdx": f"# Page {n}\n\nEdited in {name}.\n" for n in range(1, args.changed)}
            repo.commit("edit", {**edits, "docs/new.mdx": "# New page\n\nAdded.\n"})
        run(f"3. {args.changed} files changed + 1 deleted", f"2 + {args.changed} files")
        times = [run(f"4. no change (run {n + 1})", "1 (304)") for n in range(args.runs)]
        print(f"no-change run over {args.repos} repositories: median {statistics.median(times) * 1000:.1f} ms, "
              f"worst {max(times) * 1000:.1f} ms, {statistics.median(times) * 1000 / args.repos:.1f} ms per repository")  # fmt: skip
        server.shutdown()


if __name__ == "__main__":
    main()
