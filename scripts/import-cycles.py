#!/usr/bin/env python3
"""Import cycles between the files of the workspace's library crates (issue: "no import
cycle between files"): builds the graph of `use crate::...` / `use super::...` / `use
self::...` statements (test modules excluded), file to file, and prints every strongly
connected component of more than one file. Exit status 1 when there is one.

    scripts/import-cycles.py
"""
import os,re,sys
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
found=[]
def modfile(root, parts):
    # resolve a module path (list) under crate root dir to a file
    p=os.path.join(root,*parts)
    for c in (p+'.rs', os.path.join(p,'mod.rs')):
        if os.path.isfile(c): return c
    return None
def file_mod(root, f):
    rel=os.path.relpath(f,root)[:-3].split(os.sep)
    if rel[-1]=='mod': rel=rel[:-1]
    if rel==['lib'] or rel==['main']: rel=[]
    return rel
cycles=set()
for crate in ['deploy','models','train','compress']:
    root=os.path.join(crate,'src')
    files=[os.path.join(d,f) for d,_,fs in os.walk(root) for f in fs if f.endswith('.rs') and '/bin/' not in os.path.join(d,f)]
    edges={}
    for f in files:
        mod=file_mod(root,f)
        src=open(f).read()
        # strip test modules roughly: ignore lines after '#[cfg(test)]'
        src=src.split('#[cfg(test)]')[0]
        deps=set()
        for m in re.finditer(r'use (crate|super|self)((?:::\w+)+)(?:::\{([^;]*)\})?;', src):
            base=m.group(1); path=[x for x in m.group(2).split('::') if x]
            if base=='crate': start=[]
            elif base=='super': start=mod[:-1]
            else: start=mod
            names=[path] if not m.group(3) else [path+[n.strip().split(' ')[0].split('::')[0]] for n in m.group(3).split(',') if n.strip()]
            for full in names:
                full=start+[x for x in full if x!='self']
                # longest prefix that is a file
                for k in range(len(full),-1,-1):
                    t=modfile(root,full[:k]) if k>0 else os.path.join(root,'lib.rs')
                    if t and os.path.isfile(t):
                        if t!=f: deps.add(t)
                        break
        edges[f]=deps
    import sys
    sys.setrecursionlimit(10000)
    idx={};low={};st=[];on=set();c=[0]
    def sc(v):
        idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
        for w in edges.get(v,()):
            if w not in edges: continue
            if w not in idx: sc(w);low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],idx[w])
        if low[v]==idx[v]:
            comp=[]
            while True:
                w=st.pop();on.discard(w);comp.append(w)
                if w==v: break
            if len(comp)>1:
                found.append(comp); print('cycle in', crate + ':', ' <-> '.join(sorted(comp)))
    for v in list(edges):
        if v not in idx: sc(v)
    for a,ds in edges.items():
        for b in ds:
            if a in edges.get(b,()): cycles.add(tuple(sorted((a,b))))
sys.exit(1 if found else 0)
