// The whole nn layer: modules and layers, losses, optimizers and schedules, data, trainer,
// checkpoints.
#pragma once

#include "nn/augment.hpp"
#include "nn/checkpoint.hpp"
#include "nn/data.hpp"
#include "nn/datasets.hpp"
#include "nn/init.hpp"
#include "nn/layers.hpp"
#include "nn/lbfgs.hpp"
#include "nn/loss.hpp"
#include "nn/module.hpp"
#include "nn/optim.hpp"
#include "nn/program.hpp"
#include "nn/schedule.hpp"
#include "nn/sequence.hpp"
#include "nn/summary.hpp"
#include "nn/trainer.hpp"
