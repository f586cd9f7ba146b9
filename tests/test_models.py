"""Model registry: parameter counts and output shapes."""

import pytest
import torch

from landscape.models import MODELS, build_model, count_parameters, has_batchnorm


def test_simple_cnn_matches_the_original_assignment():
    assert count_parameters(build_model("simple_cnn")) == 809_034


@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_shape(name):
    model = build_model(name)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_cnn_width_and_batchnorm():
    small, big = build_model("cnn", width=4), build_model("cnn", width=8)
    assert count_parameters(small) < count_parameters(big)
    # conv 1→w (9w + w), conv w→2w (18w² + 2w), fc 98w→64, fc 64→10
    w = 4
    assert count_parameters(small) == 10 * w + 18 * w * w + 2 * w + 98 * w * 64 + 64 + 650
    assert has_batchnorm(build_model("cnn_bn")) and not has_batchnorm(small)


def test_unknown_model_lists_allowed():
    with pytest.raises(ValueError, match="Supported models are"):
        build_model("resnet")
