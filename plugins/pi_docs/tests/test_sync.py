"""The sync algorithm against the fake GitHub: full feed, 304, compare statuses, fallbacks, failures."""

from __future__ import annotations

import httpx
import pytest
from conftest import REPO, indexed_ids

from pi_framework import runtime
from pi_framework.contract.sinks import SearchQuery
from pi_framework.pipeline.indexer import Indexer

pytestmark = pytest.mark.slow  # real git repositories (a git subprocess per commit) behind a local fake GitHub

DOCS = {
    "docs/intro.md": "# Intro\n\nWelcome to the **orbit** planner.\n",
    "docs/guide/setup.mdx": "---\ntitle: Setup guide\ndescription: Install it\n---\nimport X from 'x'\n\n# Setup\n\n<Note>Run the zephyr installer.</Note>\n",
    "notes.txt": "Plain text about quasar tuning.\n",
    "README.md": "# Readme is not documentation\n",
    "docs/CONTRIBUTING.md": "# How to contribute\n",
    "src/app.py": "print('not docs')\n",
}


def doc(path: str, repo: str = REPO) -> str:
    return f"docs:{repo}:{path}"


def text_hits(word: str, workspace: str = "any-workspace") -> list[str]:
    sink = runtime.get_sinks()[0]
    return sorted({hit.document_id for hit in sink.search_text(SearchQuery(workspace_id=workspace, text=word, kinds=["docs"]))})


def test_first_run_is_a_full_feed_of_doc_files_only(git_repo, fake_github, run_sync):
    sha = git_repo.commit("docs", DOCS)
    [result] = run_sync()
    assert result.status == "synced" and result.mode == "full" and result.sha == sha
    assert indexed_ids() == {doc("docs/intro.md"), doc("docs/guide/setup.mdx"), doc("notes.txt")}
    assert result.added == 3 and result.removed == 0
    # commits + recursive tree + one raw fetch per doc file
    assert result.api_calls == 2 + 3 == len(fake_github.requests)
    assert text_hits("zephyr") == [doc("docs/guide/setup.mdx")]
    assert text_hits("quasar", workspace="another-workspace") == [doc("notes.txt")]


def test_nothing_changed_costs_one_call_answered_304(git_repo, fake_github, run_sync):
    git_repo.commit("docs", DOCS)
    run_sync()
    fake_github.reset_log()
    [result] = run_sync()
    assert result.status == "unchanged" and result.api_calls == 1
    [(path, headers)] = fake_github.requests
    assert "/commits/HEAD" in path and headers.get("if-none-match")
    assert len(indexed_ids()) == 3


def test_add_modify_delete_rename_copy(git_repo, fake_github, run_sync):
    git_repo.commit(
        "docs", {**DOCS, "docs/old-name.md": "# Old\n\nThe nebula chapter, long enough to be found by rename detection.\n" * 3}
    )
    run_sync()
    git_repo.git("mv", "docs/old-name.md", "docs/new-name.md")
    (git_repo.path / "notes.txt").unlink()
    copied = (git_repo.path / "docs/intro.md").read_text()
    git_repo.write(
        {
            "docs/intro-copy.md": copied,
            "docs/intro.md": copied + "\nNow with pulsar support.\n",
            "docs/added.mdx": "# Added\n\nComet facts.\n",
        }
    )
    fake_github.reset_log()
    git_repo.commit("change all")
    [result] = run_sync()
    assert result.status == "synced" and result.mode == "compare"
    [compare] = [path for path in fake_github.paths() if "/compare/" in path]
    files = httpx.get(fake_github.url + compare, timeout=5).json()["files"]
    assert {f["status"] for f in files} == {"added", "modified", "removed", "renamed", "copied"}
    assert indexed_ids() == {
        doc(p) for p in ("docs/intro.md", "docs/intro-copy.md", "docs/guide/setup.mdx", "docs/new-name.md", "docs/added.mdx")
    }
    changed = 4  # intro modified, intro-copy copied, new-name renamed, added.mdx added
    assert result.api_calls == 2 + changed
    assert result.added == 3 and result.updated == 1 and result.removed == 2
    assert text_hits("pulsar") == [doc("docs/intro.md")]
    assert text_hits("nebula") == [doc("docs/new-name.md")]
    assert text_hits("quasar") == []


def test_more_than_300_changed_files_fall_back_to_a_tree_diff(git_repo, fake_github, run_sync):
    git_repo.commit("docs", DOCS)
    run_sync()
    (git_repo.path / "notes.txt").unlink()
    git_repo.commit("many", {f"docs/bulk/page-{n:03}.md": f"# Page {n}\n\nbulk page number {n}\n" for n in range(310)})
    fake_github.reset_log()
    [result] = run_sync()
    assert result.status == "synced" and result.mode == "tree-diff"
    ids = indexed_ids()
    assert len(ids) == 2 + 310 and doc("notes.txt") not in ids and doc("docs/bulk/page-309.md") in ids
    assert result.added == 310 and result.removed == 1
    # commits, compare (capped at 300), the two trees, then only the changed files
    assert result.api_calls == 4 + 310


def test_truncated_tree_is_walked_sub_tree_by_sub_tree(git_repo, fake_github, run_sync):
    git_repo.commit("docs", {**DOCS, **{f"docs/deep/{n}/page.md": f"# Deep {n}\n\ntext {n}\n" for n in range(4)}})
    fake_github.truncate_above = 3
    [result] = run_sync()
    assert result.status == "synced"
    assert len(indexed_ids()) == 3 + 4
    tree_calls = [p for p in fake_github.paths() if "/git/trees/" in p]
    assert len(tree_calls) > 2 and any("recursive" not in p for p in tree_calls)


def test_rate_limit_with_retry_after_then_success(git_repo, fake_github, run_sync):
    git_repo.commit("docs", DOCS)
    fake_github.script(
        r"/commits/",
        429,
        {"retry-after": "0", "x-ratelimit-remaining": "10"},
        {"message": "You have exceeded a secondary rate limit."},
    )
    fake_github.script(
        r"/raw/.*intro", 403, {"retry-after": "0"}, {"message": "You have triggered an abuse detection mechanism."}
    )
    [result] = run_sync()
    assert result.status == "synced" and len(indexed_ids()) == 3
    assert result.api_calls == 2 + 3 + 2


def test_primary_limit_beyond_the_bound_gives_up_with_a_clear_error_and_retries_next_run(
    git_repo, fake_github, run_sync, caplog_loguru
):
    import time

    git_repo.commit("docs", DOCS)
    reset = str(int(time.time()) + 3600)
    fake_github.script(
        r"/git/trees/", 403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}, {"message": "API rate limit exceeded"}
    )
    [result] = run_sync()
    assert result.status == "failed" and "PI_GITHUB_MAX_WAIT" in result.error and result.api_calls == 2
    assert "giving up for this run" in caplog_loguru.text
    assert indexed_ids() == set()
    [result] = run_sync()
    assert result.status == "synced" and len(indexed_ids()) == 3


def test_server_error_then_success(git_repo, fake_github, run_sync):
    git_repo.commit("docs", DOCS)
    fake_github.script(r"/raw/.*notes.txt", 500, body={"message": "Server Error"})
    fake_github.script(r"/git/trees/", 502, body={"message": "Bad Gateway"})
    [result] = run_sync()
    assert result.status == "synced" and len(indexed_ids()) == 3 and result.api_calls == 2 + 3 + 2


def test_binary_and_non_utf8_text_files(git_repo, run_sync, caplog_loguru):
    git_repo.commit(
        "docs",
        {
            **DOCS,
            "docs/image.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "docs/latin.txt": "Caf\xe9 cr\xe8me brul\xe9e".encode("cp1252"),
        },
    )
    [result] = run_sync()
    assert result.status == "synced" and result.skipped == 1
    assert doc("docs/image.txt") not in indexed_ids() and doc("docs/latin.txt") in indexed_ids()
    assert f"{doc('docs/image.txt')} skipped: docs/image.txt: binary content" in caplog_loguru.text
    assert text_hits("crème") == [doc("docs/latin.txt")]


def test_a_huge_file_is_skipped_with_one_warning_and_its_old_version_removed(git_repo, run_sync, caplog_loguru):
    from pi_docs.github import MAX_FILE_BYTES

    git_repo.commit("docs", {**DOCS, "docs/huge.md": "# Huge\n\nThe nebula changelog, small for now.\n"})
    run_sync()
    assert doc("docs/huge.md") in indexed_ids()
    git_repo.commit("grow", {"docs/huge.md": "# Huge\n\n" + "The nebula changelog grows. " * (MAX_FILE_BYTES // 28 + 1)})
    caplog_loguru.lines.clear()
    [result] = run_sync()
    assert result.status == "synced" and result.skipped == 1
    warnings = [line for line in caplog_loguru.lines if line.startswith("WARNING") and "docs/huge.md" in line]
    assert len(warnings) == 1 and f"{doc('docs/huge.md')} skipped" in warnings[0] and "byte cap" in warnings[0]
    assert doc("docs/huge.md") not in indexed_ids() and doc("docs/intro.md") in indexed_ids()
    assert text_hits("nebula") == []


def test_mdx_with_broken_front_matter_is_indexed_and_logged(git_repo, run_sync, caplog_loguru):
    git_repo.commit("docs", {**DOCS, "docs/broken.mdx": "---\ntitle: [unclosed\n---\n# Broken\n\nThe halcyon page.\n"})
    [result] = run_sync()
    assert result.status == "synced" and doc("docs/broken.mdx") in indexed_ids()
    assert "docs/broken.mdx: broken front matter ignored" in caplog_loguru.text
    assert text_hits("halcyon") == [doc("docs/broken.mdx")]


def test_a_repo_that_404s_beside_one_that_works(git_repo, fake_github, run_sync):
    git_repo.commit("docs", DOCS)
    results = run_sync(PI_DOCS_REPOS=f"acme/missing,{REPO}@nope,{REPO}")
    by_repo = {r.repo: r for r in results}
    assert by_repo["acme/missing@HEAD"].status == "failed" and "acme/missing" in by_repo["acme/missing@HEAD"].error
    assert "404" in by_repo["acme/missing@HEAD"].error
    assert by_repo[f"{REPO}@nope"].status == "failed" and "'nope'" in by_repo[f"{REPO}@nope"].error
    assert by_repo[f"{REPO}@HEAD"].status == "synced" and len(indexed_ids()) == 3


def test_crash_between_indexing_and_recording_the_sha(git_repo, fake_github, run_sync, monkeypatch):
    from pi_docs.sync import DocsSync

    git_repo.commit("docs", DOCS)
    run_sync()
    git_repo.commit("edit", {"docs/intro.md": "# Intro\n\nNow about the meteor.\n", "docs/more.md": "# More\n\nsupernova\n"})
    (git_repo.path / "notes.txt").unlink()
    git_repo.commit("delete")
    original = DocsSync.save_state

    def crash(self, spec, head, pending=None):
        raise KeyboardInterrupt  # the worker dies here: after the index, before the SHA

    monkeypatch.setattr(DocsSync, "save_state", crash)
    try:
        run_sync()
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(DocsSync, "save_state", original)
    expected = {doc("docs/intro.md"), doc("docs/more.md"), doc("docs/guide/setup.mdx")}
    assert indexed_ids() == expected
    [result] = run_sync()
    assert result.status == "synced" and result.mode == "compare" and result.unchanged == 2
    assert indexed_ids() == expected
    sink = runtime.get_sinks()[0]
    chunks = sum(1 for _ in Indexer().ledger.chunk_ids(sorted(expected)))
    assert sink.count(kind="docs") == chunks
    assert text_hits("meteor") == [doc("docs/intro.md")] and text_hits("quasar") == []
    [result] = run_sync()
    assert result.status == "unchanged" and result.api_calls == 1


def test_ids_are_qualified_by_repository_and_path(git_repo, fake_github, run_sync, tmp_path):
    from fake_github import GitRepo

    other = GitRepo(tmp_path / "other")
    other.commit("docs", {"docs/intro.md": "# Other intro\n", "a-b.mdx": "# dash\n", "a_b.txt": "underscore\n"})
    fake_github.add_repo("acme/other", other)
    git_repo.commit("docs", DOCS)
    results = run_sync(PI_DOCS_REPOS=f"{REPO},acme/other")
    assert [r.status for r in results] == ["synced", "synced"]
    ids = indexed_ids()
    assert {
        doc("docs/intro.md"),
        doc("docs/intro.md", "acme/other"),
        doc("a-b.mdx", "acme/other"),
        doc("a_b.txt", "acme/other"),
    } <= ids
    assert len(ids) == 6


def test_path_prefix_and_branch(git_repo, fake_github, run_sync):
    git_repo.commit("docs", DOCS)
    git_repo.git("checkout", "-q", "-b", "release/v2")
    git_repo.commit("v2", {"docs/v2.md": "# V2 only\n"})
    git_repo.git("checkout", "-q", "main")
    [result] = run_sync(PI_DOCS_REPOS=f"{REPO}@release/v2:docs")
    assert result.status == "synced" and result.repo == f"{REPO}@release/v2:docs"
    assert indexed_ids() == {doc("docs/intro.md"), doc("docs/guide/setup.mdx"), doc("docs/v2.md")}


def test_history_rewrite_is_diffed_by_tree(git_repo, fake_github, run_sync):
    first = git_repo.commit("docs", DOCS)
    git_repo.commit("extra", {"docs/extra.md": "# Extra\n\nvanishing\n"})
    run_sync()
    git_repo.git("reset", "-q", "--hard", first)
    git_repo.commit("rewritten", {"docs/other.md": "# Other\n"})
    [result] = run_sync()
    assert result.status == "synced" and result.mode == "tree-diff"
    assert doc("docs/extra.md") not in indexed_ids() and doc("docs/other.md") in indexed_ids()


def test_full_feed_removes_what_disappeared(git_repo, run_sync):
    git_repo.commit("docs", DOCS)
    run_sync()
    (git_repo.path / "notes.txt").unlink()
    git_repo.commit("rm")
    [result] = run_sync(full=True)
    assert result.mode == "full" and result.removed == 1 and result.unchanged == 2 and result.updated == 0
    assert doc("notes.txt") not in indexed_ids()


def test_local_git_repository(git_repo, fake_github, run_sync):
    git_repo.commit("docs", DOCS)
    spec = f"file://{git_repo.path}"
    [result] = run_sync(PI_DOCS_REPOS=spec)
    assert result.status == "synced" and result.api_calls == 0 and not fake_github.requests
    assert f"docs:{git_repo.path}:notes.txt" in indexed_ids()
    git_repo.git("mv", "notes.txt", "moved.txt")
    git_repo.commit("move")
    [result] = run_sync()
    assert result.mode == "compare" and result.removed == 1 and result.added == 1
    assert f"docs:{git_repo.path}:moved.txt" in indexed_ids() and f"docs:{git_repo.path}:notes.txt" not in indexed_ids()
    [result] = run_sync()
    assert result.status == "unchanged"


def test_token_is_sent_as_bearer_and_never_logged(git_repo, fake_github, run_sync, caplog_loguru):
    git_repo.commit("docs", DOCS)
    fake_github.script(r"/commits/", 500)
    [result] = run_sync(GITHUB_TOKEN="ghp_secret_value_123")
    assert result.status == "synced"
    api = [headers for path, headers in fake_github.requests if not path.startswith("/raw/")]
    assert all(headers.get("authorization") == "Bearer ghp_secret_value_123" for headers in api)
    assert "ghp_secret_value_123" not in caplog_loguru.text


def test_a_document_the_indexer_refuses_is_retried_without_holding_back_the_rest(git_repo, fake_github, run_sync):
    too_long = "docs/" + "/".join(["d" * 100] * 5) + "/page.md"  # its id is longer than the ledger accepts
    git_repo.commit("docs", {**DOCS, too_long: "# Deep\n"})
    [result] = run_sync()
    assert result.status == "failed" and list(result.failed) and "retried next run" in result.error
    assert len(indexed_ids()) == 3
    git_repo.commit("more", {"docs/later.md": "# Later\n"})
    fake_github.reset_log()
    [result] = run_sync()
    assert result.mode == "compare" and doc("docs/later.md") in indexed_ids()
    assert result.api_calls == 2 + 2  # the new file and the refused one, fetched again
    git_repo.git("mv", too_long, "docs/deep.md")
    git_repo.commit("shorter")
    [result] = run_sync()
    assert result.status == "synced" and doc("docs/deep.md") in indexed_ids()
    [result] = run_sync()
    assert result.status == "unchanged" and result.api_calls == 1


def test_chunks_starting_mid_section_carry_the_section_heading(git_repo, run_sync):
    paragraphs = "\n\n".join(f"Paragraph {n} explains the orbital mechanics of deployments in some detail." for n in range(60))
    page = f"---\ntitle: Deploying\n---\n# Deploying\n\nIntro.\n\n## Kubernetes setup\n\n{paragraphs}\n\n```bash\n# not a heading\n```\n"
    git_repo.commit("docs", {"docs/deploy.mdx": page})
    [result] = run_sync()
    assert result.status == "synced"
    sink = runtime.get_sinks()[0]
    hits = sink.search_text(SearchQuery(workspace_id="w", text="orbital mechanics deployments", kinds=["docs"], limit=50))
    texts = sorted({hit.text for hit in hits})
    assert len(texts) > 1
    later = [text for text in texts if not text.startswith("Deploying\n# Deploying")]
    assert later and all(text.startswith("Deploying: Kubernetes setup\n") for text in later)
