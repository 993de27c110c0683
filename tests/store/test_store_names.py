import pytest

from getbatch.store import (InvalidName, validate_archpath, validate_bucket_name,
                            validate_object_name)

GOOD_OBJECTS = [
    "a", "a/b/c.txt", ".hidden", "a..b", "..a", "a/..b", "a./b", "a b", "a+b", "100%", "%2F",
    "日本/語.txt", "ünï/cödé", "a~", "~a", "~", "x/~/y", "a\\b", "a?b#c", "é" * 100,
]

BAD_OBJECTS = [
    ("", "empty"),
    ("..", '".."'),
    (".", '"."'),
    ("../a", '".."'),
    ("a/..", '".."'),
    ("a/../b", '".."'),
    ("./a", '"."'),
    ("a/./b", '"."'),
    ("a/.", '"."'),
    ("~/a", "'~/'"),
    ("dir/", "trailing"),
    ("/", "trailing"),
    ("/abs", "leading '/'"),
    ("a//b", "empty path component"),
    ("a\0b", "NUL"),
    ("a\r\nb", "control characters"),
    ("a\nb", "control characters"),
    ("tab\there", "control characters"),
    ("del\x7f", "control characters"),
    ("bad\udcff", "not valid UTF-8"),
]


@pytest.mark.parametrize("name", GOOD_OBJECTS)
def test_good_object_names(name):
    assert validate_object_name(name) == name


@pytest.mark.parametrize("name,reason", BAD_OBJECTS)
def test_bad_object_names(name, reason):
    with pytest.raises(InvalidName) as ei:
        validate_object_name(name)
    shown = name if name.isprintable() else name.encode("unicode_escape").decode("ascii")
    assert str(ei.value).startswith(f'invalid object name "{shown}": ')
    assert shown.isprintable() and reason in ei.value.reason


def test_object_name_message_example():
    with pytest.raises(InvalidName, match=r'^invalid object name "a/\.\./b": '
                                          r'path component "\.\." not allowed$'):
        validate_object_name("a/../b")


@pytest.mark.parametrize("name", [None, 5, b"a"])
def test_non_string_names(name):
    for fn in (validate_object_name, validate_archpath, validate_bucket_name):
        with pytest.raises(InvalidName):
            fn(name)


@pytest.mark.parametrize("path", ["", "a", "./a", "a/./b", "/a", "//a", "a//b", ".", "..a",
                                  "a..", "x/y.tar", "日本.txt", "a b+c"])
def test_good_archpaths(path):
    assert validate_archpath(path) == path


@pytest.mark.parametrize("path", ["..", "../a", "a/..", "a/../b", "./../a", "~/a", "a/",
                                  "/", "a\0"])
def test_bad_archpaths(path):
    with pytest.raises(InvalidName) as ei:
        validate_archpath(path)
    shown = path if path.isprintable() else path.encode("unicode_escape").decode("ascii")
    assert str(ei.value).startswith(f'invalid archpath "{shown}"')


@pytest.mark.parametrize("name", ["b", "B-1", "a.b_c-d", "x" * 64, "...", ".a", "0"])
def test_good_bucket_names(name):
    assert validate_bucket_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "x" * 65, "a/b", "a b", "ü", "a\0", "a:b",
                                  "a@b", "a#b"])
def test_bad_bucket_names(name):
    with pytest.raises(InvalidName) as ei:
        validate_bucket_name(name)
    shown = name if name.isprintable() else name.encode("unicode_escape").decode("ascii")
    assert str(ei.value).startswith(f'invalid bucket name "{shown}"')


def test_dataset_shaped_names_pass():
    # Speed is the benchmark's business; here only that realistic shard paths are accepted.
    for i in range(0, 10_000, 97):
        n = f"shard-{i:06d}/dir.{i % 7}/file-{i}.wav"
        validate_object_name(n)
        validate_archpath(n)
