import pytest
import torch

from sot_ray.errors import SotError
from sot_ray.models import ModelOutput, count_parameters, create_model, get_spec, list_models

# ../shared/paper.md: parameter counts of the reference implementations, 100 classes
REFERENCE_PARAMS = {
    "resnet8": 83_892, "resnet14": 181_108, "resnet20": 278_324, "resnet32": 472_756,
    "resnet44": 667_188, "resnet56": 861_620, "resnet110": 1_736_564, "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860, "ResNet18": 11_220_132, "ResNet34": 21_328_292,
    "ResNet50": 23_705_252, "wrn_16_1": 180_916, "wrn_16_2": 703_284, "wrn_40_1": 569_780,
    "wrn_40_2": 2_255_156, "vgg8": 3_965_028, "vgg11": 9_277_284, "vgg13": 9_462_180,
    "vgg16": 14_774_436, "vgg19": 20_086_692, "MobileNetV2": 812_836, "ShuffleV1": 949_258,
    "ShuffleV2": 1_355_528,
}


def test_registry_holds_exactly_the_paper_zoo():
    assert sorted(list_models()) == sorted(REFERENCE_PARAMS)


@pytest.mark.parametrize("name", list_models())
def test_parameter_count_matches_reference(name):
    assert count_parameters(create_model(name, 100)) == REFERENCE_PARAMS[name]


@pytest.mark.parametrize("name", list_models())
def test_any_class_count_changes_only_the_classifier(name):
    m10, m100 = create_model(name, 10), create_model(name, 100)
    emb = m10(torch.randn(1, 3, 32, 32).expand(2, -1, -1, -1)).feats[-1].shape[1]
    assert count_parameters(m100) - count_parameters(m10) == 90 * (emb + 1)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_and_feature_contract(name):
    torch.manual_seed(0)
    model = create_model(name, 7)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 7)
    assert len(out.feats) == len(out.preact_feats) >= 5
    for f, p in zip(out.feats, out.preact_feats):
        assert f.shape == p.shape and f.shape[0] == 2
    assert out.feats[-1].dim() == 2  # the pooled embedding the classifier reads
    assert all(f.dim() == 4 for f in out.feats[:-1])
    (out.logits.sum() + sum(f.float().mean() for f in out.feats[1:-1])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", [n for n in list_models() if get_spec(n).native_64])
def test_models_with_adaptive_pooling_take_64x64(name):
    model = create_model(name, 200).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.logits.shape == (1, 200)


def test_preact_features_differ_from_post_relu_where_there_is_a_relu():
    torch.manual_seed(0)
    out = create_model("resnet8", 10)(torch.randn(2, 3, 32, 32))
    assert (out.preact_feats[3] < 0).any() and (out.feats[3] >= 0).all()


def test_unknown_model_lists_valid_names():
    with pytest.raises(SotError, match="valid models: .*wrn_40_2"):
        get_spec("wrn_40_3")
