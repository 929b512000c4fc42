"""Prompt import: every format, encodings, duplicates, and errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.prompts import (
    ImportResult,
    PromptImportError,
    content_key,
    import_prompts,
    read_prompts,
)
from core.store import ProjectStore

STARTER = Path(__file__).resolve().parents[2] / "resources" / "starter_prompts.jsonl"
CJK = "为什么天空是蓝色的？"
EMOJI = "Write a haiku 🌸 about 🐱‍👤 ninjas"


@pytest.fixture
def store(tmp_path: Path):
    s = ProjectStore(tmp_path / "p.db")
    yield s
    s.close()


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def rows(store: ProjectStore) -> list[dict]:
    return [dict(r) for r in store.db.query("SELECT * FROM prompts ORDER BY id")]


def jsonl(*objs: object) -> str:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)


# ---- formats ----------------------------------------------------------------------------------
def test_txt_strips_lines_and_ignores_blanks(tmp_path):
    path = write(tmp_path, "p.txt", "  first prompt  \n\n   \n\tsecond\t\nthird")
    got = read_prompts(path)
    assert [(p.text, p.line, p.messages) for p in got] == [
        ("first prompt", 1, None),
        ("second", 4, None),
        ("third", 5, None),
    ]


def test_jsonl_plain_and_chat(tmp_path, store):
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "  Tell me a joke.  "},
    ]
    path = write(
        tmp_path,
        "p.jsonl",
        jsonl({"prompt": " plain ", "id": 7}) + "\n" + jsonl({"messages": chat}),
    )
    result = import_prompts(store, path)
    assert (result.added, result.skipped_duplicates, result.total) == (2, 0, 2)
    plain, chat_row = rows(store)
    assert plain["text"] == "plain" and plain["messages"] is None
    assert plain["content_key"] == "plain" and plain["source"] == "p.jsonl"
    assert chat_row["text"] == "Tell me a joke."
    stored = json.loads(chat_row["messages"])
    assert stored[-1] == {"role": "user", "content": "Tell me a joke."}
    assert chat_row["content_key"] == content_key("Tell me a joke.", stored)
    assert store.prompt_messages(chat_row["id"]) == stored
    assert len({plain["uuid"], chat_row["uuid"]}) == 2 and plain["created_at"]


def test_trl_conversational_prompt_is_a_chat(tmp_path):
    path = write(tmp_path, "p.jsonl", jsonl({"prompt": [{"role": "user", "content": "Hi"}]}))
    (p,) = read_prompts(path)
    assert p.text == "Hi" and p.messages == [{"role": "user", "content": "Hi"}]


def test_csv_multiline_cells_and_record_lines(tmp_path, store):
    content = (
        'id,Prompt,notes\r\n1,"first\r\nspans two lines",x\r\n\r\n2,second,"a\r\nb"\r\n3,third,\r\n'
    )
    path = write(tmp_path, "p.csv", content)
    got = read_prompts(path)
    assert [(p.text, p.line) for p in got] == [
        ("first\r\nspans two lines", 2),
        ("second", 5),
        ("third", 7),
    ]
    assert import_prompts(store, path, source="batch-1").added == 3
    assert {r["source"] for r in rows(store)} == {"batch-1"}


def test_json_list(tmp_path):
    path = write(
        tmp_path,
        "p.json",
        '[\n  {"prompt": "a"},\n  {"messages": [{"role": "user", "content": "b"}]}\n]\n',
    )
    assert [(p.text, p.line) for p in read_prompts(path)] == [("a", 2), ("b", 3)]
    bad = write(tmp_path, "bad.json", '[\n  {"prompt": "a"},\n  {"prompt": 3}\n]')
    with pytest.raises(PromptImportError, match=r"bad\.json line 3: \"prompt\" must be a string"):
        read_prompts(bad)


# ---- encodings --------------------------------------------------------------------------------
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_bom_crlf_cjk_emoji_kept_exactly(tmp_path, store, newline, bom):
    text = newline.join([CJK, EMOJI, "  spaced  "]) + newline
    path = write(tmp_path, "p.txt", bom + text.encode("utf-8"))
    import_prompts(store, path)
    texts = [r["text"] for r in rows(store)]
    assert texts == [CJK, EMOJI, "spaced"]
    raw = store.conn.execute("SELECT CAST(text AS BLOB) FROM prompts ORDER BY id").fetchall()
    assert raw[0][0] == CJK.encode("utf-8") and raw[1][0] == EMOJI.encode("utf-8")


def test_bom_jsonl_and_csv(tmp_path):
    j = write(tmp_path, "p.jsonl", b"\xef\xbb\xbf" + jsonl({"prompt": CJK}).encode())
    c = write(tmp_path, "p.csv", b"\xef\xbb\xbfprompt\r\n" + EMOJI.encode() + b"\r\n")
    assert read_prompts(j)[0].text == CJK
    assert read_prompts(c)[0].text == EMOJI


def test_non_utf8_names_the_line(tmp_path, store):
    path = write(tmp_path, "latin.txt", "ok\nalso ok\n日本 caf".encode() + b"\xe9\n")
    with pytest.raises(
        PromptImportError, match=r"latin\.txt line 3: not valid UTF-8 \(byte 0xe9 at column 7\)"
    ):
        import_prompts(store, path)
    assert rows(store) == []


# ---- duplicates -------------------------------------------------------------------------------
def test_duplicates_within_file_and_across_imports(tmp_path, store):
    chat = {"messages": [{"role": "user", "content": "x"}]}
    first = write(
        tmp_path, "a.jsonl", jsonl({"prompt": "x"}, {"prompt": " x "}, chat, chat, {"prompt": "y"})
    )
    r1 = import_prompts(store, first)
    assert (r1.added, r1.skipped_duplicates, r1.total) == (3, 2, 5)
    assert len(r1.prompt_ids) == 3 and "2 exact duplicates skipped" in str(r1)
    second = write(tmp_path, "b.txt", "y\nz\nx\n")
    r2 = import_prompts(store, second)
    assert isinstance(r2, ImportResult)
    assert (r2.added, r2.skipped_duplicates, r2.total) == (1, 2, 3)
    assert [r["text"] for r in rows(store)] == ["x", "x", "y", "z"]
    r3 = import_prompts(store, first)
    assert (r3.added, r3.skipped_duplicates) == (0, 5)


def test_content_key():
    msgs = [{"role": "user", "content": "你好 👋"}]
    assert content_key("  hi \n", None) == "hi"
    assert content_key("ignored", msgs) == '[{"content":"你好 👋","role":"user"}]'


# ---- errors -----------------------------------------------------------------------------------
BAD_JSONL = [
    ('{"prompt": "a" "b"}', r"invalid JSON \(Expecting ',' delimiter at column 16\)"),
    ('{"text": "no prompt field"}', r'needs a "prompt" \(text\) or "messages" \(chat\) field'),
    ('{"prompt": 42}', r'"prompt" must be a string, found int'),
    ('{"prompt": "   "}', r'"prompt" is empty'),
    ('{"messages": []}', r'"messages" must be a non-empty list'),
    ('{"messages": "hi"}', r'"messages" must be a non-empty list'),
    ('{"messages": [{"role": "robot", "content": "x"}]}', r"message 1 has role 'robot'"),
    ('{"messages": [{"role": "user"}]}', r'message 1 must be an object with "role" and "content"'),
    ('{"messages": [{"role": "user", "content": 5}]}', r'message 1 "content" must be a string'),
    ('{"messages": [{"role": "system", "content": "x"}]}', r"the chat has no user turn"),
    ('{"prompt": "a", "messages": []}', r'has both "prompt" and "messages"'),
    ('["a list"]', r"expected a JSON object, found list"),
]


@pytest.mark.parametrize(("line", "problem"), BAD_JSONL)
def test_malformed_jsonl_names_file_and_line_and_writes_nothing(tmp_path, store, line, problem):
    import_prompts(store, write(tmp_path, "before.txt", "already here\n"))
    before = rows(store)
    content = (
        jsonl({"prompt": "one"}, {"prompt": "two"})
        + "\n"
        + line
        + "\n"
        + jsonl({"prompt": "after"})
    )
    path = write(tmp_path, "prompts.jsonl", content)
    with pytest.raises(PromptImportError, match=r"^prompts\.jsonl line 4: " + problem) as info:
        import_prompts(store, path)
    assert info.value.line == 4
    assert str(info.value).endswith("Fix the line and import again; nothing was imported.")
    assert rows(store) == before


def test_csv_errors(tmp_path):
    with pytest.raises(
        PromptImportError, match=r"p\.csv line 1: the header row has no 'prompt' column"
    ):
        read_prompts(write(tmp_path, "p.csv", "question,answer\nwhy,because\n"))
    with pytest.raises(PromptImportError, match=r"q\.csv line 3: invalid CSV"):
        read_prompts(write(tmp_path, "q.csv", 'prompt\nfine\n"never closed\nmore\n'))
    with pytest.raises(PromptImportError, match=r"r\.csv line 3: the 'prompt' cell is empty"):
        read_prompts(write(tmp_path, "r.csv", "prompt,n\nfine,1\n ,2\n"))


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("p.xlsx", "x", r"unknown prompt file type '\.xlsx'.*Use one of \.txt, \.jsonl"),
        ("p.txt", "", r"no prompts found"),
        ("p.jsonl", "\n  \n", r"no prompts found"),
        ("p.csv", "prompt\n", r"no prompts found"),
    ],
)
def test_unknown_extension_and_empty_files(tmp_path, store, name, content, problem):
    with pytest.raises(PromptImportError, match=problem):
        import_prompts(store, write(tmp_path, name, content))
    assert rows(store) == []


def test_missing_file_is_a_user_error(tmp_path):
    from core.errors import UserError

    assert issubclass(PromptImportError, UserError)
    with pytest.raises(PromptImportError, match=r"nope\.txt: cannot be read"):
        read_prompts(tmp_path / "nope.txt")


# ---- starter set ------------------------------------------------------------------------------
def test_starter_prompts_import_cleanly(store):
    result = import_prompts(store, STARTER)
    assert result.added == result.total >= 150 and result.skipped_duplicates == 0
    texts = [r["text"] for r in rows(store)]
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in t) for t in texts) >= 20
    assert store.count("prompts", "messages IS NOT NULL") >= 3
    assert all(len(t) < 300 for t in texts)
