"""How many entries one listing page holds, for every backend and listing of `store`."""

MAX_PAGE = 10_000  # entries in one listing page when the client asks for "as many as you like"


def page_limit(page_size: int) -> int:
    """The entries a page asked for with `page_size` holds (0 or less: as many as allowed)."""
    return min(page_size, MAX_PAGE) if page_size > 0 else MAX_PAGE
