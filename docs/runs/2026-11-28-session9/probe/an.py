import os,sys,collections
d=sys.argv[1]
fs=sorted(os.listdir(d),key=lambda f:int(f.split('-')[1]))
names=['stream','aa','bb']
groups=[fs[i:i+4] for i in range(0,len(fs),4)]
data=collections.defaultdict(list)
for g,files in enumerate(groups):
    r,k=divmod(g,3); v=names[(k+r)%3]
    for f in files:
        for l in open(os.path.join(d,f)):
            x=list(map(int,l.split()))
            data[v].append(x)
for v in names:
    rows=data[v][:]
    rows.sort(key=lambda x:x[0])
    n=len(rows); p99=rows[int(n*0.99)][0]
    tail=[x for x in rows if x[0]>=p99*0.9]
    print(v,n,'p99',p99/1e3,'tail(>=0.9p99)',len(tail))
    # categorize tail
    c=collections.Counter()
    for rtt,snd,w,win,arm,probe,parked,vc,ic in tail:
        cat=[]
        if snd>rtt*0.5: cat.append('send-dominant')
        if v=='aa': cat.append(f"arm{arm}p{probe}k{parked}")
        cat.append(f"v{vc}i{ic}")
        c[' '.join(cat)]+=1
    for k,m in c.most_common(12): print('   ',m,k)
    if v=='aa':
        c2=collections.Counter((x[4],x[5],x[6]) for x in rows)
        print('  all waits arm/probe/parked:',dict(c2))
        for key in c2:
            sel=sorted(x[0] for x in rows if (x[4],x[5],x[6])==key)
            print('   ',key,'n',len(sel),'p50',sel[len(sel)//2]/1e3,'p90',sel[int(len(sel)*.9)]/1e3, 'over p99', sum(1 for s in sel if s>=p99))
    c3=collections.Counter((x[7],x[8]) for x in rows)
    print('  recv csw (v,i):',sorted(c3.items())[:8])
    ic_send=0
print('---- aa spin-arm detail')
rows=data['aa']
sp=[x for x in rows if x[4]==0]
import statistics
for key in [(0,0),(1,0),(0,1)]:
    sel=sorted(x[0]-x[1] for x in sp if (x[5],x[6])==key[::-1][::-1] and x[5]==key[1] and x[6]==key[0])
for probe in (0,1):
  for parked in (0,1):
    sel=sorted(x[0]-x[1] for x in sp if x[5]==probe and x[6]==parked)
    if sel: print('probe',probe,'parked',parked,len(sel),'wait pcts', [round(sel[int(len(sel)*q)]/1e3,1) for q in (0.1,0.5,0.75,0.9,0.95,0.99) ], 'windows', collections.Counter(round(x[3]/1e3) for x in sp if x[5]==probe and x[6]==parked).most_common(4))
pk=sorted(x[0]-x[1] for x in rows if x[4]==1)
print('park wait pcts',[round(pk[int(len(pk)*q)]/1e3,1) for q in (0.1,0.5,0.75,0.9,0.95,0.99)])
# runs: how long spin-arm streaks last
streak=[];cur=0
