"""One way from a model's card or configuration to its ModelInfo, for the loader, the training editors and the GPU
benchmark (each had its own copy, and the benchmark's let the FLUX check override the card's native side)."""

import pytest

from openkontext.engine.buckets import FLUX_KONTEXT_BUCKETS, make_buckets
from openkontext.engine.configs import CONFIGS
from openkontext.engine.model_info import (MODEL_CARD_FILE, EditDefaults, config_info, model_info, model_label,
                                           read_card)

FLUX = CONFIGS["flux-kontext-dev"].transformer
SMALL = CONFIGS["small"].transformer


def test_the_cards_native_side_wins_even_for_a_flux_sized_transformer():
    info = model_info({"native_side": 512}, name="n", description="d", transformer=FLUX, native_side=1024)
    assert info.buckets == make_buckets(512)


def test_without_a_card_flux_gets_its_own_buckets_and_others_their_sample_size():
    assert model_info({}, name="n", description="d", transformer=FLUX, native_side=1024).buckets == FLUX_KONTEXT_BUCKETS
    assert model_info({}, name="n", description="d", transformer=SMALL, native_side=256).buckets == make_buckets(256)


def test_card_values_and_defaults():
    card = {"name": "mine", "max_sequence_length": 48, "glyph_context": True, "preserve": 0.15, "guidance": "cfg"}
    info = model_info(card, name="folder", description="d", transformer=SMALL, native_side=64)
    assert (info.name, info.description, info.max_sequence_length, info.glyph_context) == ("mine", "d", 48, "line")
    assert (info.preserve, info.guidance_mode, info.prompt_sized_text, info.placeholder) == (0.15, "cfg", False, False)
    plain = model_info({}, name="folder", description="d", transformer=SMALL, native_side=64)
    assert (plain.name, plain.max_sequence_length, plain.preserve) == ("folder", 512, 0.0)
    assert plain.guidance_mode == "embedded" and plain.glyph_context == "" and plain.glyph_guidance == 1.0
    aligned = model_info({"glyph_context": "aligned", "glyph_guidance": 6}, name="n", description="d",
                         transformer=SMALL, native_side=64)  # fmt: skip
    assert aligned.glyph_guidance == 6.0


@pytest.mark.parametrize("value, layout", [(True, "line"), (False, ""), ("line", "line"), ("rows", "rows"), ("", "")])
def test_glyph_context_is_a_layout_and_older_cards_true_means_line(value, layout):
    card = {"glyph_context": value}
    assert model_info(card, name="n", description="d", transformer=SMALL, native_side=64).glyph_context == layout


def test_an_unknown_glyph_layout_is_refused_when_the_model_loads():
    with pytest.raises(ValueError, match="'grid' is not a glyph layout: expected one of line, rows"):
        model_info({"glyph_context": "grid"}, name="n", description="d", transformer=SMALL, native_side=64)


def test_an_unknown_guidance_mode_is_refused_when_the_model_loads():
    with pytest.raises(ValueError, match="guidance 'strong' is not one of embedded, cfg, change"):
        model_info({"guidance": "strong"}, name="n", description="d", transformer=SMALL, native_side=64)


def test_a_configuration_gives_its_numbers():
    info = config_info(CONFIGS["tiny-glyph"], name="t", description="d", placeholder=True)
    assert info.buckets == make_buckets(64) and info.max_sequence_length == 48 and info.placeholder
    assert info.glyph_context and info.prompt_sized_text
    assert config_info(CONFIGS["flux-kontext-dev"], name="f", description="d", placeholder=True).buckets == (
        FLUX_KONTEXT_BUCKETS
    )


def test_read_card(tmp_path):
    assert read_card(tmp_path) == {}
    (tmp_path / MODEL_CARD_FILE).write_text('{"native_side": 64}')
    assert read_card(tmp_path) == {"native_side": 64}


def test_edit_defaults_name_glyph_guidance_only_for_a_model_that_draws_an_aligned_canvas():
    def defaults(card, **settings):
        info = model_info(card, name="n", description="d", transformer=SMALL, native_side=64)
        return EditDefaults.of(info.with_defaults(**settings))

    assert defaults({"glyph_context": "aligned", "glyph_guidance": 6, "preserve": 0.15}) == EditDefaults(0.15, 6.0)
    assert defaults({"glyph_context": "aligned"}, preserve=0.0, glyph_guidance=9) == EditDefaults(0.0, 9.0)
    assert defaults({"glyph_context": "line", "glyph_guidance": 6}) == EditDefaults(0.0, None)
    assert defaults({}, preserve=0.2, glyph_guidance=9) == EditDefaults(0.2, None)


def test_model_label_reads_what_the_loaded_model_would_report_without_loading_it(tmp_path):
    (tmp_path / MODEL_CARD_FILE).write_text('{"name": "mine", "glyph_context": "aligned", "glyph_guidance": 6}')
    assert model_label(str(tmp_path)) == ("mine", False, EditDefaults(0.0, 6.0))
    assert model_label(str(tmp_path), preserve=0.1, glyph_guidance=2) == ("mine", False, EditDefaults(0.1, 2.0))
    assert model_label("tiny-glyph", preserve=0.1) == ("random-tiny-glyph", True, EditDefaults(0.1, None))
    assert model_label(str(tmp_path / "absent")) == ("absent", False, EditDefaults(0.0, None))
