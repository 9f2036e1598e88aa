// `glmpipe plan --config FILE.yaml [--model DIR] [--json | --hf-device-map]`: loads a deployment, reads the model's
// metadata (checkpoint tensor list, or config.json alone) and prints the placement plan: a table
// (unit -> rank/device like hf_device_map, bytes per stage) or one JSON object on stdout.
// An infeasible deployment is a glmpipe::Error: main() prints the reason on stderr and exits 1.
#include <iostream>
#include <memory>

#include "launcher/command.h"
#include "planner/deployment.h"
#include "planner/model_metadata.h"
#include "planner/plan.h"

namespace {

struct PlanOptions {
  std::string config;
  std::string model;  // overrides model.path
  bool json = false;
  bool hf_device_map = false;
};

void run_plan(const PlanOptions& opt) {
  glmpipe::Deployment dep = glmpipe::load_deployment(opt.config);
  if (!opt.model.empty()) dep.model.path = opt.model;
  glmpipe::ModelMetadata meta =
      glmpipe::load_model_metadata(dep.model.path, dep.model.dtype, dep.model.quantization);
  glmpipe::Plan plan = glmpipe::make_plan(meta, dep);
  std::cout << (opt.hf_device_map ? plan.to_hf_device_map() : opt.json ? plan.to_json() : plan.to_table())
            << std::endl;
}

glmpipe::CommandRegistrar reg("plan", "Print the placement plan of a deployment", [](CLI::App& sub) {
  auto opt = std::make_shared<PlanOptions>();
  sub.add_option("--config", opt->config, "deployment YAML (see configs/)")->required();
  sub.add_option("--model", opt->model, "model directory (overrides model.path)");
  sub.add_flag("--json", opt->json, "print the plan as one JSON object");
  sub.add_flag("--hf-device-map", opt->hf_device_map,
               "print only the device map in accelerate's hf_device_map JSON shape {unit: gpu index | cpu | disk}")
      ->excludes("--json");
  sub.callback([opt] { run_plan(*opt); });
});

}  // namespace
