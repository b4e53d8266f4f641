import os,sys,collections
# per dir: count of aa spin run-outs (non-probe) by index bucket, and aa samples >60us by bucket, plus p99s
names=['stream','aa','bb']
for d in sys.argv[1:]:
    fs=sorted(os.listdir(d),key=lambda f:int(f.split('-')[1]))
    per=len(fs)//(3*(len(fs)//3//1)) if fs else 1
    # group size = clients per row
    out={}
    runs=collections.Counter(); over=collections.Counter(); p99={}
    nclients=None
    rows_by_v=collections.defaultdict(list)
    # find group size: files with traced (w!=0) come in contiguous blocks of size = clients
    sizes=[]
    for f in fs:
        pass
    import re
    k=int(os.environ.get('CLIENTS','4'))
    groups=[fs[i:i+k] for i in range(0,len(fs),k)]
    for g,files in enumerate(groups):
        r,kk=divmod(g,3); v=names[(kk+r)%3]
        for f in files:
            for i,l in enumerate(open(os.path.join(d,f))):
                x=list(map(int,l.split()))
                if i>=10: rows_by_v[v].append(x[0])
                if v=='aa' and x[2]!=0 and (x[4]&1)==0 and x[5]==0 and x[6]==1:
                    runs['<10' if i<10 else ('10-49' if i<50 else '50+')]+=1
                if i>=10 and x[0]>60000:
                    over[(v,'10-49' if i<50 else '50+')]+=1
    ps={v:sorted(s)[int(len(s)*.99)]/1e3 for v,s in rows_by_v.items()}
    print(d,'p99 S/A/B %.0f/%.0f/%.0f'%(ps['stream'],ps['aa'],ps['bb']),'aa run-outs',dict(runs),'>60us early(10-49) A/B',over[('aa','10-49')],over[('bb','10-49')],'late A/B',over[('aa','50+')],over[('bb','50+')])
