"""Search the quantisation policy together with the architecture (SimQ-NAS), on real ONNX Runtime models.

:func:`quantization_space` adds to a super-network's space one precision gene
(``int8`` or ``fp32``) per quantisable layer group of the sub-network, plus
global choices (per-channel or per-tensor weights; symmetric, asymmetric or
dynamic activations). For :class:`~sliver.elastic.mobilenet.ElasticMobileNet`
the genes are::

    q_stem        stem convolution and the fixed first block
    q             one per inverted-residual block (gated by the stage depth ``d``,
                  like ``ks`` and ``e``: genes of dropped blocks are inactive)
    q_head        final 1x1 expansion, pooling and the feature-mix convolution
    q_classifier  the linear classifier
    q_weights     per_channel | per_tensor
    q_act         asymmetric (uint8) | symmetric (int8) static activations, or dynamic

The architecture dimensions are unchanged, so the architecture of a config is
the sub-dict of the super-network's dimensions (:func:`split_config`).

:class:`QuantEvaluator` measures a config on the quantised model itself: the
sub-network is recalibrated (batch norm) and extracted exactly as
:class:`~sliver.measure.model.ModelEvaluator` does, exported to ONNX, then
quantised by ``onnxruntime.quantization`` (static QDQ calibrated on a seeded
sample of the calibration split, or dynamic) with the nodes of every ``fp32``
gene excluded by name. Calibration ranges are cached per sub-network, so
policies of the same architecture calibrate once per run.
"""

from sliver.quant.evaluator import DEFAULT_OBJECTIVES, MODEL_OBJECTIVES, QuantEvaluator
from sliver.quant.export import ACCURACY_TOLERANCE, export_quantized
from sliver.quant.quantize import ArrayReader, export_float_onnx, onnx_accuracy, onnx_node_names, quantize_onnx
from sliver.quant.search import QuantizationSection, joint_search
from sliver.quant.space import (
    ACT_MODES,
    GLOBAL_GENES,
    MOBILENET_SCALAR_GENES,
    PRECISIONS,
    WEIGHT_MODES,
    QuantError,
    fp32_nodes,
    node_genes,
    quantization_space,
    split_config,
)

__all__ = [
    "ACCURACY_TOLERANCE", "ACT_MODES", "DEFAULT_OBJECTIVES", "GLOBAL_GENES", "MOBILENET_SCALAR_GENES", "MODEL_OBJECTIVES",
    "PRECISIONS", "WEIGHT_MODES", "ArrayReader", "QuantError", "QuantEvaluator", "QuantizationSection",
    "export_float_onnx", "export_quantized", "fp32_nodes", "joint_search", "node_genes", "onnx_accuracy",
    "onnx_node_names", "quantization_space", "quantize_onnx", "split_config",
]
