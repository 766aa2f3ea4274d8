// nr/nr.hpp — the umbrella header: everything a program needs to build, train and evaluate.
//
// The corpus builder (nr/data/corpus_builder.hpp and the headers it uses) runs external
// programs and is POSIX-only, so it is not included here; include it where it is needed.
#pragma once

#include "nr/config.hpp"

#include "nr/core/error.hpp"
#include "nr/core/indices.hpp"
#include "nr/core/rng.hpp"
#include "nr/core/shape.hpp"
#include "nr/core/tensor.hpp"

#include "nr/backend/cpu/gemm.hpp"
#include "nr/backend/cpu/threads.hpp"

#include "nr/autograd/backward.hpp"
#include "nr/autograd/tape.hpp"
#include "nr/autograd/var.hpp"

#include "nr/ops/attention.hpp"
#include "nr/ops/bce.hpp"
#include "nr/ops/concat_rows.hpp"
#include "nr/ops/cross_entropy.hpp"
#include "nr/ops/elementwise.hpp"
#include "nr/ops/elu.hpp"
#include "nr/ops/embedding.hpp"
#include "nr/ops/entropy.hpp"
#include "nr/ops/gated_activation.hpp"
#include "nr/ops/gather_rows.hpp"
#include "nr/ops/gelu.hpp"
#include "nr/ops/l1.hpp"
#include "nr/ops/matmul.hpp"
#include "nr/ops/mean_rows.hpp"
#include "nr/ops/reduce.hpp"
#include "nr/ops/reshape.hpp"
#include "nr/ops/rms_norm.hpp"
#include "nr/ops/rope.hpp"
#include "nr/ops/row_scale.hpp"
#include "nr/ops/scatter_add_rows.hpp"
#include "nr/ops/sigmoid.hpp"
#include "nr/ops/silu.hpp"
#include "nr/ops/softmax.hpp"
#include "nr/ops/stick_breaking_attention.hpp"

#include "nr/nn/attention.hpp"
#include "nr/nn/block.hpp"
#include "nr/nn/config.hpp"
#include "nr/nn/embedding.hpp"
#include "nr/nn/experts.hpp"
#include "nr/nn/gated_ffn.hpp"
#include "nr/nn/language_model.hpp"
#include "nr/nn/linear.hpp"
#include "nr/nn/mixture_of_attention.hpp"
#include "nr/nn/module.hpp"
#include "nr/nn/moe_model.hpp"
#include "nr/nn/rms_norm.hpp"
#include "nr/nn/stick_breaking_attention.hpp"

#include "nr/ext/adapter.hpp"
#include "nr/ext/adapter_file.hpp"
#include "nr/ext/backbone.hpp"
#include "nr/ext/budget.hpp"
#include "nr/ext/expert_pruning.hpp"
#include "nr/ext/insert_experts.hpp"
#include "nr/ext/lora.hpp"
#include "nr/ext/new_experts.hpp"

#include "nr/optim/adamw.hpp"
#include "nr/optim/clip.hpp"
#include "nr/optim/gradient_mask.hpp"
#include "nr/optim/migu_linear.hpp"
#include "nr/optim/schedule.hpp"

#include "nr/data/sampler.hpp"
#include "nr/data/tokenizer.hpp"

#include "nr/eval/bpb.hpp"
#include "nr/eval/multiple_choice.hpp"

#include "nr/train/progress.hpp"
#include "nr/train/flops.hpp"
#include "nr/train/step.hpp"
#include "nr/train/trainer.hpp"

#include "nr/io/checkpoint.hpp"

#include "nr/report/spectrum.hpp"
#include "nr/report/svg_plot.hpp"
