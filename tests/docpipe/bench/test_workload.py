from docpipe.bench.workload import PAGE_MIX, engine_request, mineru_synthetic, totals


def test_same_seed_same_work_and_different_seed_differs():
    assert mineru_synthetic(5, seed=1) == mineru_synthetic(5, seed=1)
    assert mineru_synthetic(5, seed=1) != mineru_synthetic(5, seed=2)


def test_page_shape_and_units():
    pages = mineru_synthetic(20, seed=0)
    for page in pages:
        assert page[0].kind == "layout" and page[0].image_tokens == 37 * 37
        assert len(page) == sum(c for c, *_ in PAGE_MIX.values())
        for r in page:
            assert r.width_px % 28 == 0 and r.height_px % 28 == 0
            base = PAGE_MIX[r.kind][3]
            assert 0.7 * base - 1 <= r.output_tokens <= 1.3 * base + 1


def test_totals_near_published_mix():
    t = totals(mineru_synthetic(200, seed=0))
    # DESIGN.md: ~3,256 vision tokens and ~1,200 output tokens a page
    assert 2900 < t["image_tokens_per_page"] < 3600
    assert 1050 < t["output_tokens_per_page"] < 1350


def test_engine_request_is_deterministic():
    r = mineru_synthetic(1, seed=3)[0][1]
    a, b = engine_request(r, (1, 2, 3)), engine_request(r, (1, 2, 3))
    assert a["prompt_token_ids"] == b["prompt_token_ids"]
    assert a["images"][0].tobytes() == b["images"][0].tobytes()
    assert a["images"][0].size == (r.width_px, r.height_px)
    assert a["prompt_token_ids"].count(2) == 1



def test_text_ids_stay_below_a_tiny_vocabularys_special_ids():
    for r in mineru_synthetic(2, seed=5)[0]:
        ids = engine_request(r, (301, 300, 302))["prompt_token_ids"]
        assert [t for t in ids if t >= 300] == [301, 300, 302]
