"""Hugging Face ``transformers`` models end to end (built from small configs, random init, nothing downloaded):
a BERT-style text classifier (token ids + attention mask, ``SequenceClassifierOutput``) and a ViT-style image
classifier (``ImageClassifierOutput``): IG at the embeddings (vs Captum's LayerIntegratedGradients), KernelSHAP
over tokens, and layer methods with the output selected by ``target=("logits", k)``."""
import pytest
import torch

import attrkit as ak

transformers = pytest.importorskip("transformers", reason="transformers is a test dependency (pip install attrkit[test])")
captum_attr = pytest.importorskip("captum.attr", reason="captum is a test dependency (pip install attrkit[test])")

PAD = 0


def close(a, b, tol=1e-4):
    a, b = torch.as_tensor(a).detach().double(), torch.as_tensor(b).detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) < tol


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=3, pad_token_id=PAD)
    model = transformers.BertForSequenceClassification(cfg).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 40, (2, 8), generator=g)
    ids[1, -3:] = PAD
    return model, ids, (ids != PAD).long()


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32, num_labels=3)
    return transformers.ViTForImageClassification(cfg).eval(), torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))


def test_bert_ig_at_word_embeddings_matches_captum(bert):
    model, ids, mask = bert
    a = ak.explain(model, ids, "integrated_gradients", target=("logits", 1), forward_kwargs={"attention_mask": mask},
                   baseline="pad", steps=16)            # the pad id comes from model.config.pad_token_id
    assert a.layer == "bert.embeddings.word_embeddings" and a.values.shape == ids.shape
    assert a.info["baseline_token"] == "pad = token id 0"
    lig = captum_attr.LayerIntegratedGradients(lambda i, m: model(input_ids=i, attention_mask=m).logits,
                                               model.bert.embeddings.word_embeddings)
    theirs = lig.attribute(ids, baselines=torch.full_like(ids, PAD), additional_forward_args=(mask,), target=1,
                           n_steps=16, method="gausslegendre")
    assert close(a.info["embedding_values"], theirs) and close(a.values, theirs.sum(-1))
    # dict inputs (keyword arguments, as HF models take them) give the same per-token scores
    d = ak.explain(model, {"input_ids": ids}, "integrated_gradients", target=("logits", 1),
                   forward_kwargs={"attention_mask": mask}, baseline="pad", steps=16)
    assert close(d.values["input_ids"], a.values, 1e-6)


def test_bert_kernel_shap_over_tokens_padding_gets_zero(bert):
    model, ids, mask = bert
    k = ak.explain(model, ids, "kernel_shap", target=("logits", 2), forward_kwargs={"attention_mask": mask},
                   baseline="pad", n_samples=254, seed=0)              # 8 tokens: every coalition, exact
    assert k.info["exact"] is True
    f_x = model(input_ids=ids, attention_mask=mask).logits[:, 2].detach()
    f_pad = model(input_ids=torch.full_like(ids, PAD), attention_mask=mask).logits[:, 2].detach()
    assert close(k.values.sum(1), f_x - f_pad, 1e-5)                    # efficiency
    # the model ignores masked positions, so replacing a padding token by the pad token changes nothing
    assert float(k.values[1, -3:].abs().max()) < 1e-6 * float(k.values[1].abs().max())


def test_bert_layer_method_through_output_selection(bert):
    model, ids, mask = bert
    a = ak.explain(model, ids, "input_x_gradient", target=("logits", 0),
                   forward_kwargs={"attention_mask": mask}, layer="bert.encoder.layer.0.output")
    assert a.values.shape == ids.shape and "embedding_values" in a.info                 # per position at a layer
    lga = captum_attr.LayerGradientXActivation(lambda i, m: model(input_ids=i, attention_mask=m).logits,
                                               model.bert.encoder.layer[0].output)
    theirs = lga.attribute(ids, additional_forward_args=(mask,), target=0)
    assert close(a.info["embedding_values"], theirs)


def test_vit_ig_kernel_shap_and_grad_cam(vit):
    model, px = vit
    ig = ak.explain(model, px, "integrated_gradients", target=("logits", 2), steps=16,
                    layer="vit.embeddings.patch_embeddings.projection")
    theirs = captum_attr.LayerIntegratedGradients(lambda p: model(pixel_values=p).logits,
                                                  model.vit.embeddings.patch_embeddings.projection).attribute(
        px, baselines=torch.zeros_like(px), target=2, n_steps=16, method="gausslegendre")
    assert close(ig.values, theirs)
    ks = ak.explain(model, {"pixel_values": px}, "kernel_shap", target=("logits", 2), players={"pixel_values": ak.grid(px, 2)},
                    n_samples=14, seed=0, spread="share")                                 # 4 cells: exact
    f = model(pixel_values=px).logits[:, 2].detach()
    f0 = model(pixel_values=torch.zeros_like(px)).logits[:, 2].detach()
    assert ks.info["exact"] is True and close(ks.values["pixel_values"].sum((1, 2, 3)), f - f0, 1e-5)
    cam = ak.explain(model, px, "grad_cam", target=("logits", 2), layer="vit.embeddings.patch_embeddings.projection")
    theirs_cam = captum_attr.LayerGradCam(lambda p: model(pixel_values=p).logits,
                                          model.vit.embeddings.patch_embeddings.projection).attribute(
        px, target=2, relu_attributions=True)
    assert cam.values.shape == (2, 1, 4, 4) and close(cam.values, theirs_cam)
    assert cam.heatmap().shape == (2, 16, 16)
