// The trainer: learning, NaN stop keeping the last good weights, reproducibility, resuming.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "helpers.hpp"
#include "nn/nn.hpp"

namespace tt = boost::test_tools;
namespace fs = std::filesystem;
using ad::Array;
namespace nn = ad::nn;
using V = ad::Variable<float>;

namespace {

/// Two interleaved classes in the plane (a disc and a ring), 400 points.
std::shared_ptr<const nn::Dataset<float>> rings(std::uint64_t seed) {
  nn::Generator rng(seed);
  std::uniform_real_distribution<float> angle(0.0f, 6.2831853f), noise(-0.15f, 0.15f);
  xt::xarray<float> x = xt::zeros<float>({400, 2});
  xt::xarray<float> y = xt::zeros<float>({400});
  for (std::size_t i = 0; i < 400; ++i) {
    const float r = (i % 2 ? 1.0f : 0.3f) + noise(rng), a = angle(rng);
    x(i, 0) = r * std::cos(a);
    x(i, 1) = r * std::sin(a);
    y(i) = float(i % 2);
  }
  return std::make_shared<nn::Dataset<float>>(x, y);
}

std::shared_ptr<nn::Sequential<float>> mlp(std::uint64_t seed, bool dropout = false) {
  nn::Generator rng(seed);
  auto m = std::make_shared<nn::Sequential<float>>();
  m->add(std::make_shared<nn::Linear<float>>(2, 16, rng));
  m->add(std::make_shared<nn::Tanh<float>>());
  if (dropout) m->add(std::make_shared<nn::Dropout<float>>(0.1, seed));
  m->add(std::make_shared<nn::Linear<float>>(16, 2, rng));
  return m;
}

nn::TrainerOptions quiet(std::size_t epochs, std::ostream& log) {
  nn::TrainerOptions o;
  o.epochs = epochs;
  o.progress = nn::TrainerOptions::Progress::lines;
  o.log = &log;
  return o;
}

V ce(const V& out, const V& target) {
  return nn::cross_entropy(out, target);
}

std::vector<Array<float>> weights(const nn::Module<float>& m) {
  std::vector<Array<float>> out;
  for (const auto& p : m.parameters()) out.push_back(p.value());
  return out;
}

std::string temp_path(const std::string& name) {
  return std::string(AD_BINARY_DIR) + "/tests/" + name;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(trainer)

BOOST_AUTO_TEST_CASE(learns_and_reports) {
  auto data = rings(1);
  nn::LoaderOptions lo;
  lo.batch_size = 20;
  nn::DataLoader<float> train(data, lo);
  auto model = mlp(2);
  nn::SGDOptions so;
  so.lr = 0.5, so.momentum = 0.9;
  nn::SGD<float> opt(model->parameters(), so);
  std::ostringstream log;
  auto options = quiet(30, log);
  options.metrics_csv = temp_path("trainer_metrics.csv");
  nn::Trainer<float> trainer(*model, opt, ce, options);
  std::size_t batches = 0;
  trainer.on_batch_end = [&](std::size_t, std::size_t, double) { ++batches; };
  auto metrics = trainer.fit(train, &train);
  BOOST_TEST(metrics.size() == 30u);
  BOOST_TEST(batches == 30u * 20);
  BOOST_TEST(metrics.back().train_loss < 0.5 * metrics.front().train_loss);
  BOOST_TEST(metrics.back().val_accuracy > 0.95);
  BOOST_TEST(log.str().find("epoch 30/30: train loss") != std::string::npos);
  std::ifstream csv(options.metrics_csv);
  std::string header, line;
  std::getline(csv, header);
  BOOST_TEST(header.find("epoch,train_loss") == 0u);
  std::size_t rows = 0;
  while (std::getline(csv, line)) ++rows;
  BOOST_TEST(rows == 30u);
  auto eval = trainer.evaluate(train, true);
  BOOST_TEST(eval.predictions.size() == 400u);
  BOOST_TEST(eval.accuracy == metrics.back().val_accuracy, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(nan_loss_stops_with_the_last_good_weights) {
  auto data = rings(1);
  nn::LoaderOptions lo;
  lo.batch_size = 50;
  nn::DataLoader<float> train(data, lo);
  auto model = mlp(3);
  nn::SGD<float> opt(model->parameters(), {0.1});
  int calls = 0;
  // The loss turns NaN at the 11th batch: 8 batches per epoch, so epoch 2, batch 3.
  auto loss = [&](const V& out, const V& target) {
    V l = ce(out, target);
    return ++calls == 11 ? l * std::numeric_limits<float>::quiet_NaN() : l;
  };
  std::ostringstream log;
  nn::Trainer<float> trainer(*model, opt, loss, quiet(5, log));
  std::vector<Array<float>> before;
  trainer.on_batch_end = [&](std::size_t, std::size_t, double) { before = weights(*model); };
  BOOST_CHECK_EXCEPTION(trainer.fit(train), nn::TrainingError, [](const nn::TrainingError& e) {
    std::string m = e.what();
    return m.find("epoch 2, batch 3") != std::string::npos && m.find("NaN") != std::string::npos;
  });
  BOOST_TEST(trainer.epochs_done() == 1u);
  auto after = weights(*model);
  for (std::size_t i = 0; i < after.size(); ++i) BOOST_TEST(after[i] == before[i]);
}

BOOST_AUTO_TEST_CASE(a_nan_stop_puts_back_buffers_and_states) {
  // A model with BatchNorm and dropout: the failed batch's forward updated the running
  // statistics (with NaN) and advanced the dropout stream; both go back to before that batch.
  auto data = rings(1);
  nn::LoaderOptions lo;
  lo.batch_size = 50;
  nn::DataLoader<float> train(data, lo);
  nn::Generator rng(7);
  nn::Sequential<float> model(
      std::make_shared<nn::Linear<float>>(2, 8, rng), std::make_shared<nn::BatchNorm1d<float>>(8),
      std::make_shared<nn::Dropout<float>>(0.2, 3), std::make_shared<nn::Linear<float>>(8, 2, rng));
  nn::SGD<float> opt(model.parameters(), {0.1});
  int calls = 0;
  std::ostringstream log;
  nn::Trainer<float> trainer(model, opt, ce, quiet(1, log));
  std::vector<Array<float>> buffers;
  std::vector<nn::StateArray> states;
  auto& first = dynamic_cast<nn::Linear<float>&>(*model[0]);
  trainer.on_batch_end = [&](std::size_t, std::size_t, double) {
    buffers.clear();
    states.clear();
    for (const auto& [name, b] : model.named_buffers()) buffers.push_back(*b);
    for (const auto& [name, st] : model.named_states()) states.push_back(*st);
    // After the 3rd batch the first layer's bias turns NaN: the 4th batch's BatchNorm input is.
    if (++calls == 3) first.bias().mutable_value()(0) = std::numeric_limits<float>::quiet_NaN();
  };
  BOOST_CHECK_THROW(trainer.fit(train), nn::TrainingError);
  const auto now = model.named_buffers();
  BOOST_REQUIRE(now.size() == buffers.size());
  for (std::size_t i = 0; i < now.size(); ++i) {
    BOOST_TEST(*now[i].second == buffers[i]);
    for (float v : *now[i].second) BOOST_TEST(std::isfinite(v));
  }
  const auto st = model.named_states();
  for (std::size_t i = 0; i < st.size(); ++i) BOOST_TEST(*st[i].second == states[i]);
  for (const auto& p : model.parameters()) BOOST_TEST(!p.has_grad());
}

BOOST_AUTO_TEST_CASE(the_csv_logs_the_rate_the_epoch_trained_at) {
  auto data = rings(1);
  nn::LoaderOptions lo;
  lo.batch_size = 100;
  nn::DataLoader<float> train(data, lo);
  auto model = mlp(2);
  nn::SGD<float> opt(model->parameters(), {0.4});
  nn::Scheduler<float> scheduler(opt, std::make_shared<nn::StepSchedule>(1, 0.5));
  std::ostringstream log;
  nn::Trainer<float> trainer(*model, opt, ce, quiet(3, log));
  trainer.set_scheduler(&scheduler);
  std::vector<double> seen;
  trainer.on_batch_end = [&](std::size_t, std::size_t b, double) {
    if (b == 1) seen.push_back(opt.groups()[0].lr);
  };
  auto metrics = trainer.fit(train);
  BOOST_REQUIRE(metrics.size() == 3u);
  for (std::size_t e = 0; e < 3; ++e) BOOST_TEST(metrics[e].lr == seen[e]);
  BOOST_TEST(metrics[0].lr == 0.4, tt::tolerance(1e-12));
  BOOST_TEST(metrics[2].lr == 0.1, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(same_seed_bit_identical) {
  auto run = [](std::uint64_t seed) {
    auto data = rings(1);
    nn::LoaderOptions lo;
    lo.batch_size = 16;
    lo.seed = seed;
    nn::DataLoader<float> train(data, lo);
    auto model = mlp(seed, true);
    nn::SGDOptions so;
    so.lr = 0.1, so.momentum = 0.9;
    nn::SGD<float> opt(model->parameters(), so);
    std::ostringstream log;
    nn::Trainer<float> trainer(*model, opt, ce, quiet(3, log));
    trainer.fit(train);
    return weights(*model);
  };
  auto a = run(5), b = run(5), c = run(6);
  for (std::size_t i = 0; i < a.size(); ++i) BOOST_TEST(a[i] == b[i]);
  BOOST_TEST(a[0] != c[0]);
}

BOOST_AUTO_TEST_CASE(resume_refuses_a_checkpoint_of_other_data) {
  auto data = rings(1);
  nn::LoaderOptions lo;
  lo.batch_size = 16;
  nn::DataLoader<float> train(data, lo);
  std::ostringstream log;
  const std::string path = temp_path("trainer_meta.npz");
  auto trainer_with = [&](nn::Meta meta, auto& model, auto& opt) {
    model = mlp(4, true);
    opt = std::make_unique<nn::SGD<float>>(model->parameters(), nn::SGDOptions{});
    nn::TrainerOptions o = quiet(2, log);
    o.meta = std::move(meta);
    return std::make_unique<nn::Trainer<float>>(*model, *opt, ce, o);
  };
  std::shared_ptr<nn::Sequential<float>> m;
  std::unique_ptr<nn::SGD<float>> opt;
  auto first = trainer_with({{"vocabulary", 7}}, m, opt);
  first->fit(train);
  first->save(path);
  auto other = trainer_with({{"vocabulary", 8}}, m, opt);
  const auto before = m->parameters()[0].value();
  BOOST_CHECK_EXCEPTION(other->resume(path), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("meta/data_vocabulary is 7, this run's is 8") !=
           std::string::npos;
  });
  BOOST_TEST(m->parameters()[0].value() == before);
  auto absent = trainer_with({{"size", 1}}, m, opt);
  BOOST_CHECK_EXCEPTION(absent->resume(path), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("has no meta/data_size") != std::string::npos;
  });
  auto same = trainer_with({{"vocabulary", 7}}, m, opt);
  same->resume(path);
  BOOST_TEST(same->epochs_done() == 2u);
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(resume_continues_exactly) {
  auto data = rings(1);
  nn::LoaderOptions lo;
  lo.batch_size = 16;
  lo.seed = 9;
  nn::DataLoader<float> train(data, lo);
  auto schedule = std::make_shared<nn::StepSchedule>(1, 0.7);
  auto setup = [&](auto& model, auto& opt, auto& sched, std::ostream& log, std::size_t epochs) {
    model = mlp(4, true);
    nn::SGDOptions so;
    so.lr = 0.2, so.momentum = 0.9;
    opt = std::make_unique<nn::SGD<float>>(model->parameters(), so);
    sched = std::make_unique<nn::Scheduler<float>>(*opt, schedule);
    auto t = std::make_unique<nn::Trainer<float>>(*model, *opt, ce, quiet(epochs, log));
    t->set_scheduler(sched.get());
    return t;
  };
  std::ostringstream log;
  std::shared_ptr<nn::Sequential<float>> m1, m2;
  std::unique_ptr<nn::SGD<float>> o1, o2;
  std::unique_ptr<nn::Scheduler<float>> s1, s2;
  // Straight through: 4 epochs.
  auto straight = setup(m1, o1, s1, log, 4);
  straight->fit(train);
  // Interrupted: 2 epochs, a checkpoint, a fresh process state, resume to 4.
  const std::string path = temp_path("trainer_resume.npz");
  {
    std::shared_ptr<nn::Sequential<float>> m;
    std::unique_ptr<nn::SGD<float>> o;
    std::unique_ptr<nn::Scheduler<float>> s;
    auto first = setup(m, o, s, log, 2);
    first->fit(train);
    first->save(path);
  }
  auto resumed = setup(m2, o2, s2, log, 4);
  resumed->resume(path);
  BOOST_TEST(resumed->epochs_done() == 2u);
  auto ran = resumed->fit(train);
  BOOST_TEST(ran.size() == 2u);
  BOOST_TEST(ran.front().epoch == 3u);
  auto a = weights(*m1), b = weights(*m2);
  for (std::size_t i = 0; i < a.size(); ++i) BOOST_TEST(a[i] == b[i]);
  BOOST_TEST(o1->groups()[0].lr == o2->groups()[0].lr);
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(nan_weights_stop_training_through_relu) {
  // relu once turned NaN into 0: a checkpoint with a NaN weight trained on silently.
  auto data = rings(1);
  nn::LoaderOptions lo;
  lo.batch_size = 50;
  nn::DataLoader<float> train(data, lo);
  nn::Generator rng(8);
  nn::Sequential<float> model(std::make_shared<nn::Linear<float>>(2, 8, rng),
                              std::make_shared<nn::ReLU<float>>(),
                              std::make_shared<nn::Linear<float>>(8, 2, rng));
  model.parameters()[0].mutable_value()(0, 0) = std::numeric_limits<float>::quiet_NaN();
  nn::SGD<float> opt(model.parameters(), {0.1});
  std::ostringstream log;
  nn::Trainer<float> trainer(model, opt, ce, quiet(1, log));
  BOOST_CHECK_EXCEPTION(trainer.fit(train), nn::TrainingError, [](const nn::TrainingError& e) {
    return std::string(e.what()).find("batch 1: the loss is NaN") != std::string::npos;
  });
}

namespace {

/// A trainer over the rings with an SGD or Adam optimizer, for the resume checks.
struct Run {
  std::shared_ptr<nn::Sequential<float>> model = mlp(4);
  std::unique_ptr<nn::Optimizer<float>> opt;
  std::ostringstream log;
  std::unique_ptr<nn::Trainer<float>> trainer;
  explicit Run(bool adam, std::size_t epochs = 3) {
    if (adam)
      opt = std::make_unique<nn::Adam<float>>(model->parameters(), nn::AdamOptions{});
    else
      opt = std::make_unique<nn::SGD<float>>(model->parameters(), nn::SGDOptions{0.1, 0.9});
    trainer = std::make_unique<nn::Trainer<float>>(*model, *opt, ce, quiet(epochs, log));
  }
};

bool says(const std::exception& e, std::initializer_list<std::string> parts) {
  std::string m = e.what();
  for (const auto& p : parts)
    if (m.find(p) == std::string::npos) return false;
  return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE(resuming_with_another_optimizer_or_none_is_an_error) {
  auto data = rings(1);
  nn::LoaderOptions lo;
  lo.batch_size = 100;
  nn::DataLoader<float> train(data, lo);
  const std::string path = temp_path("trainer_optimizer.npz");
  {
    Run sgd(false, 1);
    sgd.trainer->fit(train);
    sgd.trainer->save(path);
  }
  // An SGD checkpoint resumed with Adam once ran on with Adam's step count and zero moments.
  Run adam(true);
  const auto before = weights(*adam.model);
  BOOST_CHECK_EXCEPTION(adam.trainer->resume(path), ad::Error, [](const ad::Error& e) {
    return says(e, {"trainer_optimizer.npz", "SGD optimizer, not of Adam", "reset"});
  });
  const auto after = weights(*adam.model);
  for (std::size_t i = 0; i < after.size(); ++i) BOOST_TEST(after[i] == before[i]);
  // Explicitly: the weights load, the optimizer starts afresh.
  BOOST_CHECK_NO_THROW(adam.trainer->resume(path, true));
  BOOST_TEST(adam.trainer->epochs_done() == 1u);
  BOOST_TEST(adam.opt->state()[0].step == 0u);
  // A checkpoint without optimizer state once reset the optimizer silently.
  const std::string bare = temp_path("trainer_bare.npz");
  nn::save_checkpoint<float>(bare, *adam.model, nullptr, {{"epochs_done", 1}});
  Run sgd(false);
  BOOST_CHECK_EXCEPTION(sgd.trainer->resume(bare), ad::Error, [](const ad::Error& e) {
    return says(e, {"trainer_bare.npz", "no optimizer state"});
  });
  BOOST_CHECK_NO_THROW(sgd.trainer->resume(bare, true));
  std::remove(path.c_str());
  std::remove(bare.c_str());
}

BOOST_AUTO_TEST_CASE(meta_values_are_checked_before_the_model_is_touched) {
  const std::string path = temp_path("trainer_meta.npz");
  for (double bad : {-5.0, std::numeric_limits<double>::quiet_NaN(), 2.5, 1e30, 4.0}) {
    BOOST_TEST_CONTEXT("epochs_done " << bad) {
      Run source(false);
      nn::save_checkpoint(path, *source.model, source.opt.get(), {{"epochs_done", bad}});
      Run target(false);
      const auto before = weights(*target.model);
      BOOST_CHECK_EXCEPTION(target.trainer->resume(path), ad::Error,
                            [](const ad::Error& e) { return says(e, {"epochs_done"}); });
      BOOST_TEST(target.trainer->epochs_done() == 0u);
      const auto after = weights(*target.model);
      for (std::size_t i = 0; i < after.size(); ++i) BOOST_TEST(after[i] == before[i]);
    }
  }
  Run source(false);
  nn::save_checkpoint(path, *source.model, source.opt.get(),
                      {{"epochs_done", 1}, {"scheduler_step", -1}});
  Run target(false);
  BOOST_CHECK_EXCEPTION(target.trainer->resume(path), ad::Error, [](const ad::Error& e) {
    return says(e, {"scheduler_step", "-1"});
  });
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(empty_sets_are_errors) {
  auto empty = std::make_shared<nn::Dataset<float>>(Array<float>(xt::zeros<float>({0, 2})),
                                                    Array<float>(xt::zeros<float>({0})));
  nn::LoaderOptions lo;
  lo.batch_size = 10;
  nn::DataLoader<float> none(empty, lo);
  nn::DataLoader<float> train(rings(1), lo);
  Run run(false);
  BOOST_CHECK_EXCEPTION(run.trainer->fit(none), ad::Error,
                        [](const ad::Error& e) { return says(e, {"training set has no batch"}); });
  BOOST_CHECK_EXCEPTION(run.trainer->fit(train, &none), ad::Error,
                        [](const ad::Error& e) { return says(e, {"val set is empty"}); });
  BOOST_CHECK_EXCEPTION(run.trainer->evaluate(none), ad::Error,
                        [](const ad::Error& e) { return says(e, {"empty"}); });
  lo.batch_size = 500;
  lo.drop_last = true;
  nn::DataLoader<float> too_few(rings(1), lo);
  BOOST_CHECK_EXCEPTION(run.trainer->fit(too_few), ad::Error, [](const ad::Error& e) {
    return says(e, {"no batch", "drop_last"});
  });
  BOOST_TEST(run.trainer->epochs_done() == 0u);
}

BOOST_AUTO_TEST_CASE(output_paths_are_checked_before_training_and_one_failure_keeps_the_other) {
  auto data = rings(1);
  nn::LoaderOptions lo;
  lo.batch_size = 100;
  nn::DataLoader<float> train(data, lo);
  for (const std::string which : {"checkpoint", "metrics"}) {
    Run run(false, 1);
    nn::TrainerOptions o = quiet(1, run.log);
    o.checkpoint = temp_path("trainer_out.npz");
    o.metrics_csv = temp_path("trainer_out.csv");
    (which == "checkpoint" ? o.checkpoint : o.metrics_csv) = temp_path("no/such/folder/file");
    nn::Trainer<float> trainer(*run.model, *run.opt, ce, o);
    std::size_t batches = 0;
    trainer.on_batch_end = [&](std::size_t, std::size_t, double) { ++batches; };
    BOOST_CHECK_EXCEPTION(trainer.fit(train), ad::Error,
                          [](const ad::Error& e) { return says(e, {"no/such/folder"}); });
    BOOST_TEST(batches == 0u);  // found before the first epoch trained
  }
  // A failure after an epoch (here the metrics path became a folder) still saves the checkpoint.
  const std::string ckpt = temp_path("trainer_keep.npz"), csv = temp_path("trainer_keep.csv");
  std::remove(ckpt.c_str());
  Run run(false, 1);
  nn::TrainerOptions o = quiet(1, run.log);
  o.checkpoint = ckpt;
  o.metrics_csv = csv;
  nn::Trainer<float> trainer(*run.model, *run.opt, ce, o);
  trainer.on_batch_end = [&](std::size_t, std::size_t, double) { fs::create_directories(csv); };
  BOOST_CHECK_EXCEPTION(trainer.fit(train), ad::Error,
                        [&](const ad::Error& e) { return says(e, {"trainer_keep.csv"}); });
  BOOST_TEST(fs::exists(ckpt));
  fs::remove_all(csv);
  std::remove(ckpt.c_str());
}

BOOST_AUTO_TEST_CASE(a_bad_label_names_its_sample) {
  Array<float> x = ad::test::uniform<float>({6, 2});
  Array<float> y{0, 1, 0, 1, 7, 0};  // sample 4 has no class 7 among 2
  auto data = std::make_shared<nn::Dataset<float>>(x, y);
  nn::LoaderOptions lo;
  lo.batch_size = 3;
  lo.seed = 3;
  nn::DataLoader<float> train(data, lo);
  Run run(false);
  BOOST_CHECK_EXCEPTION(run.trainer->fit(train), ad::Error, [](const ad::Error& e) {
    return says(e, {"training sample 4", "is 7", "[0, 2)"});
  });
}

BOOST_AUTO_TEST_CASE(accumulating_two_batches_equals_one_batch_twice_the_size) {
  // In double, with a mean loss: two batches of 20 summed (each loss halved) are one batch of 40.
  auto run = [](std::size_t batch, std::size_t accumulate, std::size_t* steps) {
    Array<float> x = ad::test::uniform<float>({80, 2}), y = ad::test::uniform<float>({80, 1});
    auto data = std::make_shared<nn::Dataset<float>>(x, y);
    nn::LoaderOptions lo;
    lo.batch_size = batch;
    lo.shuffle = false;
    nn::DataLoader<double> loader(data, lo);
    nn::Generator rng(4);
    nn::Sequential<double> m(std::make_shared<nn::Linear<double>>(2, 6, rng),
                             std::make_shared<nn::Tanh<double>>(),
                             std::make_shared<nn::Linear<double>>(6, 1, rng));
    nn::SGD<double> opt(m.parameters(), nn::SGDOptions{0.1, 0.9});
    std::ostringstream log;
    nn::TrainerOptions o;
    o.epochs = 2;
    o.classification = false;
    o.accumulate = accumulate;
    o.progress = nn::TrainerOptions::Progress::none;
    o.log = &log;
    nn::Trainer<double> trainer(
        m, opt,
        [](const ad::Variable<double>& out, const ad::Variable<double>& t) {
          return nn::mse_loss(out, t);
        },
        o);
    trainer.on_gradients = [&] { ++*steps; };
    trainer.fit(loader);
    return m.parameters();
  };
  std::size_t steps_big = 0, steps_acc = 0;
  auto big = run(40, 1, &steps_big), acc = run(20, 2, &steps_acc);
  BOOST_TEST(steps_big == 4u);  // 2 batches of 40 per epoch
  BOOST_TEST(steps_acc == 4u);  // on_gradients once per step, not per batch
  for (std::size_t i = 0; i < big.size(); ++i)
    for (std::size_t j = 0; j < big[i].size(); ++j)
      BOOST_TEST(big[i].value().data()[j] == acc[i].value().data()[j], tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(early_stopping_waits_patience_epochs) {
  auto data = rings(1);
  nn::DataLoader<float> train(data, nn::LoaderOptions{});
  auto model = mlp(2);
  nn::SGDOptions so;
  so.lr = 1e-6;  // the loss moves by far less than min_delta: the first epoch stays the best
  nn::SGD<float> opt(model->parameters(), so);
  std::ostringstream log;
  nn::TrainerOptions o = quiet(10, log);
  o.patience = 2;
  o.min_delta = 1e-3;
  nn::Trainer<float> t(*model, opt, ce, o);
  auto ran = t.fit(train, &train);
  BOOST_TEST(ran.size() == 3u);
  BOOST_TEST(t.stopped_early());
  BOOST_TEST(t.best_epoch() == 1u);
  BOOST_TEST(t.best_loss() == ran[0].val_loss);
  BOOST_TEST(log.str().find("early stop after epoch 3") != std::string::npos);
  o.min_delta = -1;
  nn::Trainer<float> bad(*model, opt, ce, o);
  BOOST_CHECK_THROW(bad.fit(train), ad::Error);
}

/// A run whose validation loss goes up and down (a rate far too high), with keep_best, a best
/// checkpoint and a plateau; `stop_after` epochs, then a checkpoint (resume_from continues it).
struct BumpyRun {
  std::shared_ptr<nn::Sequential<float>> model = mlp(3);
  std::unique_ptr<nn::SGD<float>> opt;
  std::unique_ptr<nn::ReduceLROnPlateau<float>> plateau;
  std::unique_ptr<nn::Trainer<float>> trainer;
  std::vector<std::vector<Array<float>>> after_epoch;  // weights after each epoch this run
  std::ostringstream log;
  BumpyRun(std::size_t epochs, const std::string& best_path) {
    nn::SGDOptions so;
    so.lr = 8.0, so.momentum = 0.9;
    opt = std::make_unique<nn::SGD<float>>(model->parameters(), so);
    nn::ReduceLROnPlateau<float>::Options po;
    po.patience = 1, po.factor = 0.5;
    plateau = std::make_unique<nn::ReduceLROnPlateau<float>>(*opt, po);
    nn::TrainerOptions o = quiet(epochs, log);
    o.keep_best = true;
    o.best_checkpoint = best_path;
    trainer = std::make_unique<nn::Trainer<float>>(*model, *opt, ce, o);
    trainer->set_plateau(plateau.get());
    trainer->on_epoch_end = [this](const nn::EpochMetrics&) {
      after_epoch.push_back(weights(*model));
    };
  }
};

BOOST_AUTO_TEST_CASE(keep_best_puts_back_the_best_epoch_also_across_a_resume) {
  auto data = rings(1);
  nn::LoaderOptions lo;
  lo.batch_size = 50;
  lo.seed = 3;
  nn::DataLoader<float> train(data, lo), val(rings(2), nn::LoaderOptions{});
  const std::string best1 = temp_path("trainer_best1.npz"), best2 = temp_path("trainer_best2.npz"),
                    ckpt = temp_path("trainer_bumpy.npz");
  BumpyRun straight(8, best1);
  auto ran = straight.trainer->fit(train, &val);
  BOOST_REQUIRE(ran.size() == 8u);
  std::size_t best = 0;
  for (std::size_t e = 1; e < 8; ++e)
    if (ran[e].val_loss < ran[best].val_loss) best = e;
  BOOST_TEST(straight.trainer->best_epoch() == best + 1);
  BOOST_REQUIRE(best + 1 < 8);  // else the test would not show a restore
  BOOST_TEST(weights(*straight.model) == straight.after_epoch[best]);
  BOOST_TEST(straight.plateau->factor() < 1.0);  // the bumps lowered the rate
  // The best checkpoint holds the same weights.
  auto loaded = mlp(99);
  nn::load_checkpoint(best1, *loaded);
  BOOST_TEST(weights(*loaded) == straight.after_epoch[best]);
  // Interrupted after the best epoch, resumed: the same end, the best loaded from its file.
  const std::size_t cut = best + 2;
  {
    BumpyRun first(cut, best2);
    first.trainer->fit(train, &val);
    first.trainer->save(ckpt);
  }
  BumpyRun resumed(8, best2);
  resumed.trainer->resume(ckpt);
  resumed.trainer->fit(train, &val);
  BOOST_TEST(resumed.trainer->best_epoch() == best + 1);
  BOOST_TEST(weights(*resumed.model) == straight.after_epoch[best]);
  BOOST_TEST(resumed.plateau->factor() == straight.plateau->factor());
  BOOST_TEST(resumed.opt->groups()[0].lr == straight.opt->groups()[0].lr);
  // Without a best checkpoint, a best epoch before the resume cannot be put back: an error.
  {
    BumpyRun first(cut, "");
    first.trainer->fit(train, &val);
    first.trainer->save(ckpt);
  }
  BumpyRun blind(8, "");
  blind.trainer->resume(ckpt);
  BOOST_CHECK_EXCEPTION(blind.trainer->fit(train, &val), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("no best_checkpoint") != std::string::npos;
  });
  for (const auto& p : {best1, best2, ckpt}) std::remove(p.c_str());
}

BOOST_AUTO_TEST_SUITE_END()
