# The reproduction pipeline shared by every recipe in examples/ (included by each recipe's Makefile).
#
# For every forget set and seed: train the original and the oracle (the same recipe on the retain set),
# unlearn with every pipeline at the settings `unlearn tune` chose, evaluate each unlearned model against its
# oracle (one results file per run; the oracle is measured once, when the original is scored against it, and
# later evaluations take its metrics from that file with --oracle-results), then aggregate everything with
# `unlearn report` into $(RESULTS)/, which also gets a copy of every run's results file under $(RESULTS)/runs/
# and of every search under $(RESULTS)/tuned-<mode>/ (the raw data; no checkpoints).
#
# A pipeline is a method with, optionally, a localization strategy in front of it:
#   <p>.strategy  localize strategy (empty: the method may change every parameter)
#   <p>.budgets   grid of mask budgets (empty: no mask, or the strategy's own size)
#   <p>.lrs       grid of learning rates (empty: the method does not train, e.g. ssd, iu: one run)
#   <p>.config    the method config it shares (default: its own, $(METHOD_CONFIGS)/<p>.yaml)
#   <p>.epochs    grid of epochs (default $(EPOCHS), the same for every pipeline that trains; `none`: not searched,
#                 as for retrain, whose length the cap sets)
# and $(METHOD_CONFIGS)/<p>.yaml holds its `unlearn apply --config` (the method and its fixed options).
#
# Protocol (docs/reproducing.md): settings are chosen in two phases, so that every target is a plain file
# (an interrupted run resumes where it stopped, `make -j2` runs independent steps side by side):
#   1. `tune`: for every forget set F, a validation forget set of the same kind and size (split seed
#      $(VALIDATION_SEED)) is unlearned from the seed-$(TUNE_SEED) original with every candidate of the pipeline's
#      grid (`unlearn tune`, each grid extended $(EXTEND) step past a chosen edge), scored without an oracle
#      (TUNE=free, the default) or by the average gap to the validation forget set's own oracle (TUNE=oracle, as
#      the paper tunes). The choice goes to $(WORK)/tuned-<mode>/<F>/<p>.yaml and, as budget@lr@epochs, .txt.
#   2. `report` (a second make, which reads those files): every reported forget set and seed with the chosen
#      settings, evaluated on the half of the test set that tuning never looked at (--test-part reported).
#      Run files carry their settings in their names, so both modes share the runs they agree on.
# `make both` runs the two modes and writes $(RESULTS)/tuning.md, what tuning without an oracle costs.
#
# Cost (protocol v3, docs/cost.md): every pipeline that trains is tuned and run at each cost cap of $(CAPS), as a
# fraction of retraining (`tune --max-cost`, `apply --max-cost`); `epochs=cap,cap/2` searches the most epochs each
# cap allows and half of them. The `retrain` pipeline is retraining from scratch compressed to the cap (retrain @
# F), its learning rate tuned like every other's: the baseline a cheap method must beat. Training-free pipelines
# run once, at their own cost. Each cap gets its own paired report against DEL, and $(RESULTS)/pareto.md (and
# .png) places every pipeline by cost against quality with retrain @ F as the reference curve, and F*.
#
# Variables a recipe sets: CONFIGS (train.yaml, split-<forget set>.yaml), METHOD_CONFIGS, PIPELINES, the
# per-pipeline ones above, REPORT_TITLE and SMOKE_VARIABLES (what `make smoke` trims); optional: DATA_ROOT
# (passed as --data-root), LOOP_FLAGS (apply flags for methods that train), TUNE_FLAGS (tune flags), TRAIN_FLAGS.
#
# Corrective unlearning (docs/corrective.md): MANIPULATE names a forget set that carries a manipulation of the
# training data (split kind mislabel or poison); every original is trained on the data it manipulates
# (`train --manipulate`), the oracles on the clean data without the manipulated examples (`--exclude`), and
# since a model can only unlearn a manipulation it was trained on, each validation forget set gets an original
# of its own, trained on the validation manipulation (seed $(TUNE_SEED)), from which its settings are tuned.

UNLEARN ?= ../../.venv/bin/unlearn
PYTHON ?= $(dir $(UNLEARN))python
WORK ?= work
RESULTS ?= results
SEEDS ?= 0 1 2
FORGET_SETS ?= iid noniid
TUNE ?= free
MODES ?= $(TUNE)
# the regret table compares both modes' choices, so `make regret` tunes in both
ifneq ($(filter regret,$(MAKECMDGOALS)),)
MODES := free oracle
endif
TUNE_SEED ?= $(firstword $(SEEDS))
VALIDATION_SEED ?= 1
EPOCHS ?= cap cap/2
CAPS ?= 0.05 0.1 0.25
# the cap tuning runs under when CAPS is empty (the protocol before costs were capped)
UNCAPPED_COST ?= 1
# the cap of the one-cap comparison of the two tuning modes ($(RESULTS)/tuning.md)
COMPARE_CAP ?= $(lastword $(CAPS))
EXTEND ?= 1
BASELINE ?= del + rft
DEVICE ?= auto
# one torch thread per job when make runs jobs side by side (-j2): every job taking all the cores oversubscribes them
# (`unlearn` applies the same rule itself from MAKEFLAGS; `make -j2 UNLEARN_THREADS=2` chooses another count)
export UNLEARN_THREADS ?= $(if $(filter-out -j1,$(filter -j%,$(MAKEFLAGS))),1)
QUIET ?= --quiet
DATA_ROOT ?=
DATA_FLAGS = $(if $(DATA_ROOT),--data-root $(DATA_ROOT))
MANIPULATE ?=

EXAMPLES_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
CHOSEN := $(PYTHON) $(EXAMPLES_DIR)/chosen_settings.py
COMPARE := $(PYTHON) $(EXAMPLES_DIR)/compare_tuning.py
REGRET := $(PYTHON) $(EXAMPLES_DIR)/regret.py

COMMON_FLAGS = $(DATA_FLAGS) --device $(DEVICE) $(QUIET)
ifneq ($(filter-out free oracle,$(MODES)),)
$(error TUNE=$(filter-out free oracle,$(MODES)): choose free (tune without an oracle) or oracle (the paper's way))
endif

# --- names -----------------------------------------------------------------------------------------
empty :=
comma := ,
space := $(empty) $(empty)
commas = $(subst $(space),$(comma),$(strip $(1)))
unset = $(subst _,,$(1))
# $(call run_dir,FORGET_SET,SEED)
run_dir = $(WORK)/$(1)/s$(2)
# $(call run_name,PIPELINE,CAP,BUDGET,LR,EPOCHS): e.g. del_c0.1_b0.3_lr0.05_e4, finetune_c0.25_lr0.01_e8, ssd
run_name = $(1)$(if $(2),_c$(2))$(if $(3),_b$(3))$(if $(4),_lr$(4))$(if $(5),_e$(5))
# $(call mask_file,FORGET_SET,SEED,STRATEGY,BUDGET)
mask_file = $(call run_dir,$(1),$(2))/mask-$(3)$(if $(4),_b$(4)).safetensors
# a pipeline's `apply --config` file: $(METHOD_CONFIGS)/<p>.yaml, or <p>.config's when it shares another's
config_of = $(METHOD_CONFIGS)/$(or $($(1).config),$(1)).yaml
method_of = $(shell sed -n 's/^method: *//p' $(call config_of,$(1)))
epochs_of = $(if $(filter none,$($(1).epochs)),,$(or $($(1).epochs),$(EPOCHS)))
TUNED := $(foreach p,$(PIPELINES),$(if $($(p).lrs),$(p)))
# the validation forget set of a forget set, and (oracle mode) its oracle from the tuning seed's recipe
validation_set = $(WORK)/forget-$(1)-validation.json
validation_oracle = $(WORK)/$(1)-validation/s$(TUNE_SEED)/oracle.safetensors
# the original a forget set's settings are tuned on: the tuning seed's, or with MANIPULATE one trained on the
# validation manipulation
tune_original = $(if $(MANIPULATE),$(WORK)/$(1)-validation/s$(TUNE_SEED)/original.safetensors,$(WORK)/original-s$(TUNE_SEED).safetensors)
# $(call tuned_file,MODE,FORGET_SET,PIPELINE,CAP): a search's choice, e.g. work/tuned-free/iid/del-c0.1.yaml
tuned_file = $(WORK)/tuned-$(1)/$(2)/$(3)$(if $(4),-c$(4)).yaml
# the caps a pipeline is tuned at (_ for none: CAPS empty)
CAP_KEYS = $(or $(CAPS),_)
# the settings a mode chose for a pipeline on a forget set at a cap, as budget@lr@epochs with _ for none (empty
# before phase 1 has written them)
chosen = $(if $(wildcard $(call tuned_file,$(1),$(2),$(3),$(4)).txt),$(strip $(file <$(call tuned_file,$(1),$(2),$(3),$(4)).txt)))
# every run of a pipeline as cap@budget@lr@epochs: a tuned one's choice at every cap; untuned pipelines: one run
# per budget of theirs, or one run, at their own cost
settings_of = $(if $($(3).lrs),$(foreach c,$(CAP_KEYS),$(if $(call chosen,$(1),$(2),$(3),$(call unset,$(c))),\
  $(c)@$(call chosen,$(1),$(2),$(3),$(call unset,$(c))))),$(or $(foreach b,$($(3).budgets),_@$(b)@_@_),_@_@_@_))
# $(call runs_of,MODE,FORGET_SET,PIPELINE[,CAP]): the run names of a pipeline under a mode's choice (at CAP only,
# and the untuned pipelines' runs, when CAP is given)
runs_of = $(strip $(foreach k,$(call settings_of,$(1),$(2),$(3)),$(if $(or $(if $(4),,all),\
  $(filter $(4) _,$(word 1,$(subst @, ,$(k))))),$(call run_name_of,$(3),$(k)))))
# $(call run_name_of,PIPELINE,CAP@BUDGET@LR@EPOCHS)
run_name_of = $(call run_name,$(1),$(call word_at,$(2),1),$(call word_at,$(2),2),$(call word_at,$(2),3),$(call word_at,$(2),4))
word_at = $(call unset,$(word $(2),$(subst @, ,$(1))))
mode_results = $(if $(filter oracle,$(1)),$(RESULTS)/oracle-tuned,$(RESULTS))

# --- targets ---------------------------------------------------------------------------------------
TUNED_FILES = $(foreach m,$(MODES),$(foreach f,$(FORGET_SETS),$(foreach p,$(TUNED),$(foreach c,$(CAP_KEYS),\
  $(call tuned_file,$(m),$(f),$(p),$(call unset,$(c))).txt))))
# phase 2 of a mode on a forget set (at one cap when $(3) is given): every seed's original and pipeline runs
final_results = $(foreach s,$(SEEDS),$(call run_dir,$(2),$(s))/original.json \
  $(foreach p,$(PIPELINES),$(foreach r,$(call runs_of,$(1),$(2),$(p),$(3)),$(call run_dir,$(2),$(s))/$(r).json)))
mode_final = $(foreach f,$(FORGET_SETS),$(call final_results,$(1),$(f)))
FINAL_RESULTS = $(sort $(foreach m,$(MODES),$(call mode_final,$(m))))
RAW_RESULTS = $(patsubst $(WORK)/%,$(RESULTS)/runs/%,$(FINAL_RESULTS)) \
  $(patsubst $(WORK)/%.txt,$(RESULTS)/%,$(TUNED_FILES))
mode_reports = $(addprefix $(call mode_results,$(1))/,report.md report.txt report.csv pareto.md)
REPORTS = $(foreach m,$(MODES),$(call mode_reports,$(m))) $(RAW_RESULTS)

.PHONY: all both tune report compare regret smoke clean
.DELETE_ON_ERROR:
# (no .SECONDARY: it would let make skip a missing run whose inputs are older than the files that depend on it;
# every file here has an explicit rule and is kept anyway)

all: tune
	$(MAKE) --no-print-directory report

# both modes, their runs shared where they chose alike, and the comparison of the two
both:
	$(MAKE) --no-print-directory tune MODES="free oracle"
	$(MAKE) --no-print-directory report compare MODES="free oracle"

tune: $(TUNED_FILES)

report: $(REPORTS)
	@cat $(call mode_results,$(firstword $(MODES)))/report.txt

compare: $(RESULTS)/tuning.md
	@cat $<

ifneq ($(filter report compare $(REPORTS) $(RESULTS)/tuning.md,$(MAKECMDGOALS)),)
missing_settings := $(filter-out $(wildcard $(TUNED_FILES)),$(TUNED_FILES))
ifneq ($(missing_settings),)
$(error $(firstword $(missing_settings)) not found: run `make tune MODES="$(MODES)"` (or plain `make`) first, which chooses the settings on validation forget sets)
endif
endif

# --- forget sets, originals, oracles ---------------------------------------------------------------
# SPLIT_FLAGS: more `split` flags, set per forget set by a recipe (a memorization split's --model)
$(WORK)/forget-%-validation.json: $(CONFIGS)/split-%.yaml
	@mkdir -p $(@D)
	$(UNLEARN) split --config $< --seed $(VALIDATION_SEED) $(SPLIT_FLAGS) $(DATA_FLAGS) $(QUIET) -o $@

$(WORK)/forget-%.json: $(CONFIGS)/split-%.yaml
	@mkdir -p $(@D)
	$(UNLEARN) split --config $< $(SPLIT_FLAGS) $(DATA_FLAGS) $(QUIET) -o $@

$(WORK)/original-s%.safetensors: $(CONFIGS)/train.yaml $(if $(MANIPULATE),$(WORK)/forget-$(MANIPULATE).json)
	@mkdir -p $(@D)
	$(UNLEARN) train --config $< $(if $(MANIPULATE),--manipulate $(WORK)/forget-$(MANIPULATE).json) --seed $* \
	  $(TRAIN_FLAGS) $(COMMON_FLAGS) -o $@

define VALIDATION_ORIGINAL_RULE # $(1) forget set: with MANIPULATE, the original trained on its validation manipulation
$(call tune_original,$(1)): $(CONFIGS)/train.yaml $(call validation_set,$(1))
	@mkdir -p $$(@D)
	$$(UNLEARN) train --config $$< --manipulate $(call validation_set,$(1)) --seed $(TUNE_SEED) $$(TRAIN_FLAGS) \
	  $$(COMMON_FLAGS) -o $$@
endef

define ORACLE_RULE # $(1) forget set file stem (iid, iid-validation, …), $(2) seed: the oracle trained without it
$(WORK)/$(1)/s$(2)/oracle.safetensors: $(CONFIGS)/train.yaml $(WORK)/forget-$(1).json
	@mkdir -p $$(@D)
	$$(UNLEARN) train --config $$< --exclude $(WORK)/forget-$(1).json --seed $(2) $$(TRAIN_FLAGS) $$(COMMON_FLAGS) -o $$@
endef

# what the reported evaluations are measured on: the test examples tuning never looked at; RELEARN_FLAGS (e.g.
# "--relearn --relearn-part 0.25") adds the relearning test to every evaluation, the report a relearn-gap column
RELEARN_FLAGS ?=
EVALUATE_FLAGS = --test-part reported --tune-seed $(TUNE_SEED) $(RELEARN_FLAGS) $(COMMON_FLAGS)

define ORIGINAL_RULE # $(1) forget set, $(2) seed: the original scored against the oracle (its row in the report)
$(call run_dir,$(1),$(2))/original.json: $(WORK)/original-s$(2).safetensors $(call run_dir,$(1),$(2))/oracle.safetensors
	$$(UNLEARN) evaluate $$< --forget $(WORK)/forget-$(1).json --oracle $(call run_dir,$(1),$(2))/oracle.safetensors \
	  $$(EVALUATE_FLAGS) --json $$@
endef

# --- masks -----------------------------------------------------------------------------------------
define MASK_RULE # $(1) forget set, $(2) seed, $(3) strategy, $(4) budget or empty
$(call mask_file,$(1),$(2),$(3),$(4)): $(WORK)/original-s$(2).safetensors $(WORK)/forget-$(1).json
	@mkdir -p $$(@D)
	$$(UNLEARN) localize -m $$< -f $(WORK)/forget-$(1).json --strategy $(3) $(if $(4),--budget $(4)) --seed $(2) \
	  $$(COMMON_FLAGS) -o $$@
endef

# --- unlearned models and their results ------------------------------------------------------------
define RUN_RULE # $(1) forget set, $(2) seed, $(3) pipeline, $(4) budget, $(5) learning rate, $(6) epochs, $(7) cap (each or empty)
$(call run_dir,$(1),$(2))/$(call run_name,$(3),$(7),$(4),$(5),$(6)).safetensors: $(WORK)/original-s$(2).safetensors \
  $(WORK)/forget-$(1).json $(call config_of,$(3)) $(if $($(3).strategy),$(call mask_file,$(1),$(2),$($(3).strategy),$(4)))
	@mkdir -p $$(@D)
	$$(UNLEARN) apply --config $(call config_of,$(3)) -m $$< -f $(WORK)/forget-$(1).json \
	  $(if $($(3).strategy),--mask $(call mask_file,$(1),$(2),$($(3).strategy),$(4))) \
	  $(if $(5),--lr $(5)) $(if $(6),--epochs $(6)) $(if $(7),--max-cost $(7)) $(if $(5),$$(LOOP_FLAGS)) --seed $(2) \
	  $$(COMMON_FLAGS) -o $$@

$(call run_dir,$(1),$(2))/$(call run_name,$(3),$(7),$(4),$(5),$(6)).json: \
  $(call run_dir,$(1),$(2))/$(call run_name,$(3),$(7),$(4),$(5),$(6)).safetensors $(call run_dir,$(1),$(2))/original.json
	$$(UNLEARN) evaluate $$< --forget $(WORK)/forget-$(1).json --oracle $(call run_dir,$(1),$(2))/oracle.safetensors \
	  --oracle-results $(call run_dir,$(1),$(2))/original.json --parent $(WORK)/original-s$(2).safetensors \
	  $$(EVALUATE_FLAGS) --json $$@
endef

# $(call RUN_RULE_OF,FORGET_SET,SEED,PIPELINE@CAP@BUDGET@LR@EPOCHS)
RUN_RULE_OF = $(call RUN_RULE,$(1),$(2),$(call word_at,$(3),1),$(call word_at,$(3),3),$(call word_at,$(3),4),$(call word_at,$(3),5),$(call word_at,$(3),2))

# --- settings (phase 1) ----------------------------------------------------------------------------
# a pipeline's search at a cap ($(2); empty: none): its grids and how far they extend (one validation forget set
# with MANIPULATE: only a model trained on a manipulation unlearns it, so no more can be drawn for its original)
tune_args = $(strip $(if $($(1).strategy),--strategy $($(1).strategy)) --method $(call method_of,$(1)) \
  --grid lr=$(call commas,$($(1).lrs)) $(if $(call epochs_of,$(1)),--grid epochs=$(call commas,$(call epochs_of,$(1)))) \
  $(if $($(1).budgets),--grid budget=$(call commas,$($(1).budgets))) --max-cost $(or $(2),$(UNCAPPED_COST)) --extend $(EXTEND) \
  --seed $(TUNE_SEED) $(if $(MANIPULATE),--validation-sets 1) $(TUNE_FLAGS))

# The search is written to <tuned>.args when it changed (at parse time), and the choice depends on that file: a
# new grid value, or any other change of the search, tunes again.
define TUNE_ARGS # $(1) mode, $(2) forget set, $(3) pipeline, $(4) cap or empty
ifneq ($$(file <$(call tuned_file,$(1),$(2),$(3),$(4)).args),$(call tune_args,$(3),$(4)))
$$(shell mkdir -p $(dir $(call tuned_file,$(1),$(2),$(3),$(4))))
$$(file >$(call tuned_file,$(1),$(2),$(3),$(4)).args,$(call tune_args,$(3),$(4)))
endif
endef

define TUNE_RULE # $(1) mode, $(2) forget set, $(3) pipeline, $(4) cap or empty
$(call tuned_file,$(1),$(2),$(3),$(4)): $(call tune_original,$(2)) $(call validation_set,$(2)) \
  $(call config_of,$(3)) $(call tuned_file,$(1),$(2),$(3),$(4)).args $(if $(filter oracle,$(1)),$(call validation_oracle,$(2)))
	@mkdir -p $$(@D)
	$$(UNLEARN) tune -m $$< -f $(call validation_set,$(2)) $(call tune_args,$(3),$(4)) \
	  $(if $(filter oracle,$(1)),--oracle $(call validation_oracle,$(2))) $$(COMMON_FLAGS) -o $$@

$(call tuned_file,$(1),$(2),$(3),$(4)).txt: $(call tuned_file,$(1),$(2),$(3),$(4))
	$$(CHOSEN) $$< > $$@.tmp && mv $$@.tmp $$@
endef

# every (forget set, seed) pair that has rules: all seeds, and the tuning seed even when SEEDS omits it
RULE_SEEDS = $(sort $(SEEDS) $(TUNE_SEED))
# every run some mode asks for (settings known), as pipeline@cap@budget@lr@epochs, and the masks they need
RUN_KEYS = $(sort $(foreach m,free oracle,$(foreach f,$(FORGET_SETS),$(foreach p,$(PIPELINES),\
  $(foreach k,$(call settings_of,$(m),$(f),$(p)),$(p)@$(k))))))
MASK_KEYS = $(sort $(foreach k,$(RUN_KEYS),$(if $($(call word_at,$(k),1).strategy),$($(call word_at,$(k),1).strategy)@$(word 3,$(subst @, ,$(k))))))

$(foreach f,$(FORGET_SETS),\
  $(eval $(call ORACLE_RULE,$(f)-validation,$(TUNE_SEED)))$(if $(MANIPULATE),$(eval $(call VALIDATION_ORIGINAL_RULE,$(f))))\
  $(foreach m,free oracle,$(foreach p,$(TUNED),$(foreach c,$(CAP_KEYS),$(eval $(call TUNE_RULE,$(m),$(f),$(p),$(call unset,$(c)))))))\
  $(foreach m,$(MODES),$(foreach p,$(TUNED),$(foreach c,$(CAP_KEYS),$(eval $(call TUNE_ARGS,$(m),$(f),$(p),$(call unset,$(c)))))))\
  $(foreach s,$(RULE_SEEDS),$(eval $(call ORACLE_RULE,$(f),$(s)))$(eval $(call ORIGINAL_RULE,$(f),$(s)))\
    $(foreach k,$(MASK_KEYS),$(eval $(call MASK_RULE,$(f),$(s),$(call word_at,$(k),1),$(call word_at,$(k),2))))\
    $(foreach k,$(RUN_KEYS),$(eval $(call RUN_RULE_OF,$(f),$(s),$(k))))))

# --- report (phase 2) ------------------------------------------------------------------------------
# the paired comparison against the baseline pipeline, when it runs beside others
baseline_flags = $(if $(and $(filter del,$(PIPELINES)),$(word 2,$(PIPELINES))),--baseline "$(BASELINE)")

define FORGET_REPORT_RULE # $(1) mode, $(2) forget set, $(3) cap or empty: its table with the paired comparison
$(WORK)/report-$(1)-$(2)$(if $(3),-c$(3)).md: $(call final_results,$(1),$(2),$(3))
	$$(UNLEARN) report $$^ --format markdown $(call baseline_flags) -o $$@
endef
# $(call forget_reports,MODE,FORGET_SET): its report per cap
forget_reports = $(foreach c,$(CAP_KEYS),$(WORK)/report-$(1)-$(2)$(if $(call unset,$(c)),-c$(c)).md)

define MODE_REPORT_RULE # $(1) mode
$(call mode_results,$(1))/report.md: $(foreach f,$(FORGET_SETS),$(call forget_reports,$(1),$(f))) \
  $(foreach f,$(FORGET_SETS),$(foreach p,$(TUNED),$(foreach c,$(CAP_KEYS),$(call tuned_file,$(1),$(f),$(p),$(call unset,$(c))).txt)))
	@mkdir -p $$(@D)
	{ echo "# $(REPORT_TITLE)"; echo; \
	  echo "Mean ± 95% margin (Student t) over seeds $(SEEDS); metrics in %; gaps are to the oracle; test accuracy"; \
	  echo "and the MIA's non-members on the half of the test set that tuning never looked at."; echo; \
	  echo "Settings chosen $(if $(filter oracle,$(1)),by the average gap to the oracle of,without an oracle ("'`unlearn tune`'") on) a validation forget set"; \
	  echo "(split seed $(VALIDATION_SEED)) from the seed-$(TUNE_SEED) original: grids of $(EPOCHS) epochs, the learning rates and budgets below,"; \
	  echo "each extended $(EXTEND) step past a chosen edge$(if $(CAPS),, without a cost cap)."; \
	  $(if $(CAPS),echo "Every pipeline that trains is tuned and run at each cost cap ($(CAPS) × retraining); retrain @ F"; \
	    echo "is retraining from scratch compressed to the cap. Each cap's table pairs the pipelines with DEL at that cap.";) \
	  $(foreach f,$(FORGET_SETS),echo; echo "## Forget set: $(f)"; \
	    $(foreach c,$(CAP_KEYS),echo; $(if $(call unset,$(c)),echo "### Cap $(c) × retraining"; echo;) \
	      echo "Chosen (budget, lr, epochs):$(foreach p,$(TUNED), $(p) $(subst @,/,$(call chosen,$(1),$(f),$(p),$(call unset,$(c)))))."; \
	      echo; cat $(WORK)/report-$(1)-$(f)$(if $(call unset,$(c)),-c$(c)).md;)) } > $$@.tmp
	mv $$@.tmp $$@

$(call mode_results,$(1))/pareto.md: $(call mode_final,$(1))
	@mkdir -p $$(@D)
	$$(UNLEARN) report $$^ --pareto --format markdown $(PARETO_FLAGS) --plot $(call mode_results,$(1))/pareto.png -o $$@

$(call mode_results,$(1))/report.txt: $(call mode_final,$(1))
	@mkdir -p $$(@D)
	$$(UNLEARN) report $$^ --format table -o $$@

$(call mode_results,$(1))/report.csv: $(call mode_final,$(1))
	@mkdir -p $$(@D)
	$$(UNLEARN) report $$^ --format csv -o $$@
endef
$(foreach m,$(MODES),$(foreach f,$(FORGET_SETS),$(foreach c,$(CAP_KEYS),$(eval $(call FORGET_REPORT_RULE,$(m),$(f),$(call unset,$(c))))))$(eval $(call MODE_REPORT_RULE,$(m))))

$(RESULTS)/runs/%.json: $(WORK)/%.json
	@mkdir -p $(@D)
	cp $< $@

$(RESULTS)/tuned-%.yaml: $(WORK)/tuned-%.yaml
	@mkdir -p $(@D)
	cp $< $@

# what tuning without an oracle costs: per forget set and pipeline, both modes' choices and average gaps
$(RESULTS)/tuning.md: $(foreach m,free oracle,$(call mode_final,$(m)))
	@mkdir -p $(@D)
	$(COMPARE) --work $(WORK) --seeds "$(SEEDS)" $(if $(COMPARE_CAP),--cap $(COMPARE_CAP)) \
	  $(foreach f,$(FORGET_SETS),$(foreach p,$(TUNED),\
	    $(f):$(p)=$(call runs_of,free,$(f),$(p),$(or $(COMPARE_CAP),_))/$(call runs_of,oracle,$(f),$(p),$(or $(COMPARE_CAP),_)))) > $@.tmp
	mv $@.tmp $@

# --- regret: each search's grid rerun on the reported forget set and scored against its oracle ------------------
# At COMPARE_CAP, per forget set and tuned pipeline: the union of both modes' grids (extensions included), every
# point run to the end from the tuning seed's original on the reported forget set and scored by the average gap to
# that seed's oracle; $(RESULTS)/regret.md gives each mode's choice, its gap and its regret (../regret.py).
regret_file = $(WORK)/regret/$(1)/$(2)$(if $(3),-c$(3)).yaml
REGRET_CAP = $(call unset,$(or $(COMPARE_CAP),_))
REGRET_FILES = $(foreach f,$(FORGET_SETS),$(foreach p,$(TUNED),$(call regret_file,$(f),$(p),$(REGRET_CAP))))

define REGRET_RULE # $(1) forget set, $(2) pipeline, $(3) cap or empty
$(call regret_file,$(1),$(2),$(3)): $(call tuned_file,free,$(1),$(2),$(3)) $(call tuned_file,oracle,$(1),$(2),$(3)) \
  $(WORK)/original-s$(TUNE_SEED).safetensors $(WORK)/forget-$(1).json $(call run_dir,$(1),$(TUNE_SEED))/oracle.safetensors
	@mkdir -p $$(@D)
	$$(UNLEARN) tune -m $(WORK)/original-s$(TUNE_SEED).safetensors -f $(WORK)/forget-$(1).json \
	  --oracle $(call run_dir,$(1),$(TUNE_SEED))/oracle.safetensors \
	  `$$(REGRET) args $(call tuned_file,free,$(1),$(2),$(3)) $(call tuned_file,oracle,$(1),$(2),$(3))` \
	  --extend 0 --no-halving $$(COMMON_FLAGS) -o $$@
endef
$(foreach f,$(FORGET_SETS),$(foreach p,$(TUNED),$(eval $(call REGRET_RULE,$(f),$(p),$(REGRET_CAP)))))

regret: $(RESULTS)/regret.md
	@cat $<

$(RESULTS)/regret.md: $(REGRET_FILES)
	@mkdir -p $(@D)/regret
	cp -r $(WORK)/regret/. $(@D)/regret/
	{ echo "# Selection regret at cap $(or $(COMPARE_CAP),none)"; echo; \
	  echo "Each search's grid (both modes' grids joined, extensions included) rerun on the reported forget set from the"; \
	  echo "seed-$(TUNE_SEED) original, every point to the end, scored by the average gap to the seed-$(TUNE_SEED) oracle (regret/)."; \
	  echo "regret = the chosen point's gap − the best point's (points). The search cost is the oracle-free search's own."; \
	  echo; $(REGRET) table --work $(WORK) $(if $(COMPARE_CAP),--cap $(COMPARE_CAP)) \
	    $(foreach f,$(FORGET_SETS),$(foreach p,$(TUNED),$(f):$(p))); } > $@.tmp
	mv $@.tmp $@

# --- smoke: the same pipeline on synthetic data of the recipe's shape, one optimizer step per stage ---
# configs/smoke/ holds the synthetic stand-ins; SMOKE_DIR (default: a new temporary folder) the files.
# SMOKE_GOAL: both (the two tuning modes and their comparison) or all (tuning without an oracle only).
SMOKE_DIR ?=
SMOKE_GOAL ?= both
# one optimizer step of a one-step recipe costs more than retraining it (the recovery check alone does): caps above 1
SMOKE_CAPS ?= CAPS=10 UNCAPPED_COST=10
smoke:
	dir="$(SMOKE_DIR)"; [ -n "$$dir" ] || dir=$$(mktemp -d); \
	$(MAKE) --no-print-directory $(SMOKE_GOAL) CONFIGS=configs/smoke WORK=$$dir RESULTS=$$dir/results SEEDS=0 DATA_ROOT= \
	  DEVICE=cpu EPOCHS=1 LOOP_FLAGS="--max-steps 1" TUNE_FLAGS="--param max_steps=1" $(SMOKE_CAPS) $(SMOKE_VARIABLES) \
	  && echo "smoke run in $$dir"

clean:
	rm -rf $(WORK) $(RESULTS)
