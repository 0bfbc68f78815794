# The reproduction pipeline shared by every recipe in examples/ (included by each recipe's Makefile).
#
# For every forget set and seed: train the original and the oracle (the same recipe on the retain
# set), compute masks, unlearn with every pipeline, evaluate each unlearned model against its oracle
# (one results file per run; the oracle is measured once, when the original is scored against it, and
# later evaluations take its metrics from that file with --oracle-results), then aggregate everything
# with `unlearn report` into $(RESULTS)/, which also gets a copy of every run's results file under
# $(RESULTS)/runs/ (the raw data; no checkpoints).
#
# A pipeline is a method with, optionally, a localization strategy in front of it:
#   <p>.strategy  localize strategy (empty: the method may change every parameter)
#   <p>.budgets   mask budgets (empty: one run without --budget)
#   <p>.lrs       learning-rate grid (empty: the method has no learning rate, e.g. ssd, iu)
# and $(METHOD_CONFIGS)/<p>.yaml holds its `unlearn apply --config` (method, epochs, hyperparameters).
#
# Learning rates are chosen in two phases, so that every target is a plain file (an interrupted run
# resumes where it stopped, `make -j2` runs independent steps side by side):
#   1. `tune`: on seed $(TUNE_SEED) only, every pipeline runs each learning rate of its grid (at budget
#      $(TUNE_BUDGET) when it runs at that budget, else at its first); select_lr.py writes the one with
#      the smallest average gap to the oracle, over all forget sets, to $(WORK)/lr/<p>.txt.
#   2. `report` (a second make, which reads those files): every forget set, seed and budget with the
#      chosen learning rate. Run files carry the learning rate in their name, so the seed-0 runs of
#      phase 1 are reused, not repeated.
#
# Variables a recipe sets: CONFIGS (train.yaml, split-<forget set>.yaml), METHOD_CONFIGS, PIPELINES,
# the per-pipeline ones above, REPORT_TITLE and SMOKE_VARIABLES (what `make smoke` trims); optional:
# DATA_ROOT (passed as --data-root), LOOP_FLAGS (flags for methods that train), TRAIN_FLAGS.

UNLEARN ?= ../../.venv/bin/unlearn
PYTHON ?= python3
WORK ?= work
RESULTS ?= results
SEEDS ?= 0 1 2
FORGET_SETS ?= iid noniid
TUNE_SEED ?= $(firstword $(SEEDS))
TUNE_BUDGET ?= 0.3
DEVICE ?= auto
QUIET ?= --quiet
DATA_ROOT ?=
DATA_FLAGS = $(if $(DATA_ROOT),--data-root $(DATA_ROOT))

EXAMPLES_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
SELECT_LR := $(PYTHON) $(EXAMPLES_DIR)/select_lr.py

COMMON_FLAGS = $(DATA_FLAGS) --device $(DEVICE) $(QUIET)

# --- names -----------------------------------------------------------------------------------------
# $(call run_dir,FORGET_SET,SEED)
run_dir = $(WORK)/$(1)/s$(2)
# $(call run_name,PIPELINE,BUDGET,LR): e.g. del_b0.3_lr0.05, finetune_lr0.01, ssd
run_name = $(1)$(if $(2),_b$(2))$(if $(3),_lr$(3))
# $(call mask_file,FORGET_SET,SEED,STRATEGY,BUDGET)
mask_file = $(call run_dir,$(1),$(2))/mask-$(3)$(if $(4),_b$(4)).safetensors
# budgets a pipeline runs at (one empty entry when it has none), and the one its learning rate is tuned at
budgets_of = $(if $($(1).budgets),$($(1).budgets),_)
tune_budget_of = $(if $($(1).budgets),$(if $(filter $(TUNE_BUDGET),$($(1).budgets)),$(TUNE_BUDGET),$(firstword $($(1).budgets))))
unset = $(subst _,,$(1))
TUNED := $(foreach p,$(PIPELINES),$(if $($(p).lrs),$(p)))
lr_file = $(WORK)/lr/$(1).txt
# the learning rate chosen for a pipeline (empty before phase 1 has written it)
chosen_lr = $(if $(wildcard $(call lr_file,$(1))),$(strip $(file <$(call lr_file,$(1)))))

# --- targets ---------------------------------------------------------------------------------------
# phase 1: seed TUNE_SEED, every learning rate of every grid
TUNE_RESULTS = $(foreach f,$(FORGET_SETS),$(foreach p,$(TUNED),$(foreach lr,$($(p).lrs),\
  $(call run_dir,$(f),$(TUNE_SEED))/$(call run_name,$(p),$(call tune_budget_of,$(p)),$(lr)).json)))
LR_FILES = $(foreach p,$(TUNED),$(call lr_file,$(p)))
# phase 2: every forget set, seed, pipeline and budget, with the chosen learning rate
final_results = $(foreach s,$(SEEDS),$(call run_dir,$(1),$(s))/original.json \
  $(foreach p,$(PIPELINES),$(foreach b,$(call budgets_of,$(p)),\
  $(call run_dir,$(1),$(s))/$(call run_name,$(p),$(call unset,$(b)),$(call chosen_lr,$(p))).json)))
FINAL_RESULTS = $(foreach f,$(FORGET_SETS),$(call final_results,$(f)))
# every run's results file (the tuning runs included), copied next to the report: the raw data behind it
RAW_RESULTS = $(patsubst $(WORK)/%,$(RESULTS)/runs/%,$(sort $(FINAL_RESULTS) $(TUNE_RESULTS)))
REPORTS = $(RESULTS)/report.md $(RESULTS)/report.txt $(RESULTS)/report.csv $(RAW_RESULTS)

.PHONY: all tune report smoke clean
.DELETE_ON_ERROR:
# (no .SECONDARY: it would let make skip a missing run, e.g. a new grid value, whose inputs are older than
# the learning-rate file that depends on it; every file here has an explicit rule and is kept anyway)

all: tune
	$(MAKE) --no-print-directory report

tune: $(LR_FILES)

report: $(REPORTS)
	@cat $(RESULTS)/report.txt

ifneq ($(filter report $(REPORTS),$(MAKECMDGOALS)),)
missing_lr := $(filter-out $(wildcard $(LR_FILES)),$(LR_FILES))
ifneq ($(missing_lr),)
$(error $(missing_lr) not found: run `make tune` (or plain `make`) first, which chooses the learning rates on seed $(TUNE_SEED))
endif
endif

# --- forget sets, originals, oracles ---------------------------------------------------------------
$(WORK)/forget-%.json: $(CONFIGS)/split-%.yaml
	@mkdir -p $(@D)
	$(UNLEARN) split --config $< $(DATA_FLAGS) $(QUIET) -o $@

$(WORK)/original-s%.safetensors: $(CONFIGS)/train.yaml
	@mkdir -p $(@D)
	$(UNLEARN) train --config $< --seed $* $(TRAIN_FLAGS) $(COMMON_FLAGS) -o $@

define ORACLE_RULE # $(1) forget set, $(2) seed: the oracle, and the original scored against it (its row in the report)
$(call run_dir,$(1),$(2))/oracle.safetensors: $(CONFIGS)/train.yaml $(WORK)/forget-$(1).json
	@mkdir -p $$(@D)
	$$(UNLEARN) train --config $$< --exclude $(WORK)/forget-$(1).json --seed $(2) $$(TRAIN_FLAGS) $$(COMMON_FLAGS) -o $$@

$(call run_dir,$(1),$(2))/original.json: $(WORK)/original-s$(2).safetensors $(call run_dir,$(1),$(2))/oracle.safetensors
	$$(UNLEARN) evaluate $$< --forget $(WORK)/forget-$(1).json --oracle $(call run_dir,$(1),$(2))/oracle.safetensors \
	  $$(COMMON_FLAGS) --json $$@
endef

# --- masks -----------------------------------------------------------------------------------------
define MASK_RULE # $(1) forget set, $(2) seed, $(3) strategy, $(4) budget or empty
$(call mask_file,$(1),$(2),$(3),$(4)): $(WORK)/original-s$(2).safetensors $(WORK)/forget-$(1).json
	@mkdir -p $$(@D)
	$$(UNLEARN) localize -m $$< -f $(WORK)/forget-$(1).json --strategy $(3) $(if $(4),--budget $(4)) --seed $(2) \
	  $$(COMMON_FLAGS) -o $$@
endef

# --- unlearned models and their results ------------------------------------------------------------
define RUN_RULE # $(1) forget set, $(2) seed, $(3) pipeline, $(4) budget or empty, $(5) learning rate or empty
$(call run_dir,$(1),$(2))/$(call run_name,$(3),$(4),$(5)).safetensors: $(WORK)/original-s$(2).safetensors \
  $(WORK)/forget-$(1).json $(METHOD_CONFIGS)/$(3).yaml $(if $($(3).strategy),$(call mask_file,$(1),$(2),$($(3).strategy),$(4)))
	@mkdir -p $$(@D)
	$$(UNLEARN) apply --config $(METHOD_CONFIGS)/$(3).yaml -m $$< -f $(WORK)/forget-$(1).json \
	  $(if $($(3).strategy),--mask $(call mask_file,$(1),$(2),$($(3).strategy),$(4))) $(if $(5),--lr $(5) $$(LOOP_FLAGS)) \
	  --seed $(2) $$(COMMON_FLAGS) -o $$@

$(call run_dir,$(1),$(2))/$(call run_name,$(3),$(4),$(5)).json: \
  $(call run_dir,$(1),$(2))/$(call run_name,$(3),$(4),$(5)).safetensors $(call run_dir,$(1),$(2))/original.json
	$$(UNLEARN) evaluate $$< --forget $(WORK)/forget-$(1).json --oracle $(call run_dir,$(1),$(2))/oracle.safetensors \
	  --oracle-results $(call run_dir,$(1),$(2))/original.json --parent $(WORK)/original-s$(2).safetensors \
	  $$(COMMON_FLAGS) --json $$@
endef

# every (forget set, seed) pair that has rules: all seeds, and the tuning seed even when SEEDS omits it
RULE_SEEDS = $(sort $(SEEDS) $(TUNE_SEED))
# (strategy, budget) pairs, deduplicated: pipelines sharing a strategy and budget share the mask
MASK_KEYS = $(sort $(foreach p,$(PIPELINES),$(if $($(p).strategy),\
  $(foreach b,$(sort $(call budgets_of,$(p)) $(or $(call tune_budget_of,$(p)),_)),$($(p).strategy)@$(b)))))
# runs that have rules: every grid learning rate at every budget (only the ones asked for are built)
run_keys = $(foreach b,$(sort $(call budgets_of,$(1)) $(or $(call tune_budget_of,$(1)),_)),\
  $(foreach lr,$(or $($(1).lrs),_),$(1)@$(b)@$(lr)))
word_at = $(call unset,$(word $(2),$(subst @, ,$(1))))

$(foreach f,$(FORGET_SETS),$(foreach s,$(RULE_SEEDS),\
  $(eval $(call ORACLE_RULE,$(f),$(s)))\
  $(foreach k,$(MASK_KEYS),$(eval $(call MASK_RULE,$(f),$(s),$(call word_at,$(k),1),$(call word_at,$(k),2))))\
  $(foreach p,$(PIPELINES),$(foreach k,$(call run_keys,$(p)),\
    $(eval $(call RUN_RULE,$(f),$(s),$(p),$(call word_at,$(k),2),$(call word_at,$(k),3)))))))

# --- learning-rate choice (phase 1) ----------------------------------------------------------------
define LR_RULE # $(1) pipeline
$(call lr_file,$(1)): $(foreach f,$(FORGET_SETS),$(foreach lr,$($(1).lrs),\
    $(call run_dir,$(f),$(TUNE_SEED))/$(call run_name,$(1),$(call tune_budget_of,$(1)),$(lr)).json))
	@mkdir -p $$(@D)
	$$(SELECT_LR) $(1) $$@ $(foreach f,$(FORGET_SETS),$(foreach lr,$($(1).lrs),\
	  $(lr)=$(call run_dir,$(f),$(TUNE_SEED))/$(call run_name,$(1),$(call tune_budget_of,$(1)),$(lr)).json))
endef
$(foreach p,$(TUNED),$(eval $(call LR_RULE,$(p))))

# --- report (phase 2) ------------------------------------------------------------------------------
define FORGET_REPORT_RULE # $(1) forget set: its table and its metric-vs-budget curves
$(WORK)/report-$(1).md: $(call final_results,$(1))
	@mkdir -p $(RESULTS)
	$$(UNLEARN) report $$^ --format markdown -o $$@ $(if $(strip $(foreach p,$(PIPELINES),$($(p).budgets))),\
	  --plot $(RESULTS)/curves-$(1).png)
endef
$(foreach f,$(FORGET_SETS),$(eval $(call FORGET_REPORT_RULE,$(f))))

$(RESULTS)/report.md: $(foreach f,$(FORGET_SETS),$(WORK)/report-$(f).md) $(LR_FILES)
	@mkdir -p $(@D)
	{ echo "# $(REPORT_TITLE)"; echo; \
	  echo "Mean ± 95% margin (Student t) over seeds $(SEEDS); metrics in %; gaps are to the oracle."; echo; \
	  echo "Learning rates chosen on seed $(TUNE_SEED) by average gap:$(foreach p,$(TUNED), $(p) $(call chosen_lr,$(p)))."; \
	  $(foreach f,$(FORGET_SETS),echo; echo "## Forget set: $(f)"; echo; cat $(WORK)/report-$(f).md; \
	    $(if $(wildcard $(RESULTS)/curves-$(f).png),echo; echo "![curves $(f)](curves-$(f).png)";)) } > $@.tmp
	mv $@.tmp $@

$(RESULTS)/report.txt: $(FINAL_RESULTS)
	@mkdir -p $(@D)
	$(UNLEARN) report $^ --format table -o $@

$(RESULTS)/report.csv: $(FINAL_RESULTS)
	@mkdir -p $(@D)
	$(UNLEARN) report $^ --format csv -o $@

$(RESULTS)/runs/%.json: $(WORK)/%.json
	@mkdir -p $(@D)
	cp $< $@

# --- smoke: the same pipeline on synthetic data of the recipe's shape, one optimizer step per stage ---
# configs/smoke/ holds the synthetic stand-ins; SMOKE_DIR (default: a new temporary folder) the files.
SMOKE_DIR ?=
smoke:
	dir="$(SMOKE_DIR)"; [ -n "$$dir" ] || dir=$$(mktemp -d); \
	$(MAKE) --no-print-directory all CONFIGS=configs/smoke WORK=$$dir RESULTS=$$dir/results SEEDS=0 DATA_ROOT= \
	  DEVICE=cpu LOOP_FLAGS="--epochs 1 --max-steps 1" $(SMOKE_VARIABLES) && echo "smoke run in $$dir"

clean:
	rm -rf $(WORK) $(RESULTS)
