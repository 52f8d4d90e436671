/*
 * vlm.h - the public API of libcore, the library under every vlm program:
 * the one header commands include. Each subsystem has its own header in
 * its folder, which reads and compiles on its own:
 *
 *   base/base.h        errors, dtypes and tensors, files, rng, threads
 *   formats/formats.h  .npy, .npys streams and packed embeddings,
 *                      safetensors
 *   text/text.h        the CLIP BPE tokenizer
 *   data/data.h        images, preprocessing, data sets, the batch loader
 *   model/model.h      config, parameters, forward/backward, encoders,
 *                      LoRA, upcycling
 *   train/train.h      optimizer, data sources and the sampler,
 *                      checkpoints
 *   train/comm.h       the communicator of distributed runs (MPI)
 *   eval/eval.h        metrics, linear probe, embedding files
 *   routing/routing.h  routing records and their statistics
 *   plot/plot.h        PNG charts: canvas, bitmap font, line and bar charts
 *
 * Conventions (see ../shared/docs/STYLE.md):
 *  - fallible functions return 0 on success and -1 on failure, after
 *    recording a one-line message that vlm_errmsg() returns;
 *  - libcore never exits and never writes to stdout;
 *  - tensors are dense, contiguous, row-major, outermost dimension first;
 *  - whoever allocates frees: _new/_free, _init/_release, _load/_save.
 * A new section goes into the header of its subsystem (or a new folder
 * with its header, included here).
 */
#ifndef VLM_H
#define VLM_H

#include "base/base.h"
#include "formats/formats.h"
#include "text/text.h"
#include "data/data.h"
#include "model/model.h"
#include "model/coca.h"
#include "train/train.h"
#include "train/comm.h"
#include "eval/eval.h"
#include "routing/routing.h"
#include "plot/plot.h"

#endif /* VLM_H */
